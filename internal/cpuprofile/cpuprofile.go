// Package cpuprofile writes a Go CPU profile of the running process to a
// file: keyholderd serve, device-sim run and the roundtrip tool
// (KEYHOLDER_CPUPROFILE, FromEnv) and the benchmarks use it for their
// measurements.
package cpuprofile

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// Env names the variable FromEnv reads.
const Env = "KEYHOLDER_CPUPROFILE"

// Start creates path and profiles the process into it until stop is
// called; stop ends the profile and closes the file.
func Start(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// FromEnv starts a profile into the file KEYHOLDER_CPUPROFILE names, for
// a whole run (scripts/bench-cli.sh sets it); without the variable it
// profiles nothing and stop does nothing.
func FromEnv() (stop func(), err error) {
	path := os.Getenv(Env)
	if path == "" {
		return func() {}, nil
	}
	if stop, err = Start(path); err != nil {
		return nil, fmt.Errorf("%s: %w", Env, err)
	}
	return stop, nil
}
