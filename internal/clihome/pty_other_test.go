//go:build !linux

package clihome

import (
	"os"
	"testing"
)

func openPTY(t *testing.T) *os.File { t.Skip("pseudo-terminal test only on Linux"); return nil }

func echoes(*testing.T, *os.File) bool { return true }
