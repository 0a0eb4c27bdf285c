package main

// CPU accounting: this process and, on a local PostgreSQL, its processes.

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpu is the CPU time of this process and, for a local PostgreSQL, of its
// processes (the exited backends through the postmaster's cutime/cstime).
type cpu struct{ self, pg time.Duration }

var clkTck = 100.0 // USER_HZ; 100 on every Linux this runs on

func cpuNow(withPG bool) cpu {
	var c cpu
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if withPG {
		c.pg = postgresCPU()
	}
	return c
}

func postgresCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks float64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "postgres" {
			continue
		}
		f := strings.Fields(s[close+1:])
		// f[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseFloat(f[i], 64)
			ticks += v
		}
	}
	return time.Duration(ticks / clkTck * float64(time.Second))
}

func (a cpu) sub(b cpu) cpu { return cpu{a.self - b.self, a.pg - b.pg} }
