// Package cpuprofile writes a Go CPU profile of the running process to a
// file: keyholderd serve (KEYHOLDER_CPUPROFILE) and the benchmarks use it
// for their measurements.
package cpuprofile

import (
	"os"
	"runtime/pprof"
)

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
