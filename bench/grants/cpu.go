package main

// CPU accounting: this process and, on a local PostgreSQL, its processes.

import (
	"time"

	"github.com/keyholder/keyholder/bench/internal/measure"
)

// cpu is the CPU time of this process and, for a local PostgreSQL, of its
// processes (the exited backends through the postmaster's cutime/cstime).
type cpu struct{ self, pg time.Duration }

func cpuNow(withPG bool) cpu {
	c := cpu{self: measure.ProcessCPU()}
	if withPG {
		c.pg = measure.PostgresCPU()
	}
	return c
}

func (a cpu) sub(b cpu) cpu { return cpu{a.self - b.self, a.pg - b.pg} }
