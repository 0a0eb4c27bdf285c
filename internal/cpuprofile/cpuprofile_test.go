package cpuprofile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Start writes a profile that is there once stopped; a second profile
// while one runs is refused, and so is a file that cannot be created.
func TestStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	stop, err := Start(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(filepath.Join(t.TempDir(), "second.pprof")); err == nil {
		t.Error("a second profile started while one runs")
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no profile written: %v", err)
	}
	if _, err := Start(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("a profile into a missing directory started")
	}
}

// FromEnv profiles into the file KEYHOLDER_CPUPROFILE names, does nothing
// without it, and names the variable when the file cannot be created.
func TestFromEnv(t *testing.T) {
	t.Setenv(Env, "")
	stop, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	path := filepath.Join(t.TempDir(), "env.pprof")
	t.Setenv(Env, path)
	if stop, err = FromEnv(); err != nil {
		t.Fatal(err)
	}
	stop()
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no profile written: %v", err)
	}
	t.Setenv(Env, filepath.Join(t.TempDir(), "no", "such", "dir", "p.pprof"))
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), Env) {
		t.Errorf("a profile into a missing directory: %v", err)
	}
}
