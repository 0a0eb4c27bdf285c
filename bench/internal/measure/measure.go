// Package measure holds what the benchmarks measure with: the CPU time of
// this process, of a thread and of a local PostgreSQL's processes, and a
// runner of n calls c at a time.
package measure

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ProcessCPU is this process's CPU time, all threads.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ThreadCPU is the calling thread's CPU time (lock the goroutine to its
// thread around a measurement).
func ThreadCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clkTck is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// this runs on.
const clkTck = 100.0

// procCPU reads /proc/PID/stat: the command's name and the process's CPU
// time, its own (utime, stime) and, with children, that of the children
// it waited for (cutime, cstime).
func procCPU(pid string, children bool) (name string, cpu time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, false
	}
	f := strings.Fields(s[close+1:])
	// f[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
	if len(f) < 15 {
		return "", 0, false
	}
	fields := []int{11, 12}
	if children {
		fields = append(fields, 13, 14)
	}
	var ticks float64
	for _, i := range fields {
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return s[open+1 : close], time.Duration(ticks / clkTck * float64(time.Second)), true
}

// PidCPU is the CPU time (user + system) process pid has used so far, 0
// if it cannot be read.
func PidCPU(pid int) time.Duration {
	_, cpu, _ := procCPU(strconv.Itoa(pid), false)
	return cpu
}

// PostgresCPU is the CPU time of this machine's postgres processes, the
// exited backends included (through the postmaster's cutime and cstime).
func PostgresCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if name, cpu, ok := procCPU(e.Name(), true); ok && name == "postgres" {
			total += cpu
		}
	}
	return total
}

// PostgresIsLocal reports whether dsn names a server on this machine (its
// processes' CPU can be read).
func PostgresIsLocal(dsn string) bool {
	for _, h := range []string{"@127.0.0.1", "@localhost", "@[::1]", "host=/"} {
		if strings.Contains(dsn, h) {
			return true
		}
	}
	return false
}

// Parallel runs fn(ctx, i) for i in [0, n) on c goroutines; the first
// error stops the rest.
func Parallel(ctx context.Context, c, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
