// Command keyholderd is the Keyholder server: `serve` runs the HTTP API,
// `migrate` creates or updates the database tables, and `admin …` drives
// the operator API (users, enrollment codes, parties, devices).
package main

import (
	"os"

	"github.com/keyholder/keyholder/cmd/keyholderd/daemon"
)

func main() { os.Exit(daemon.Main()) }
