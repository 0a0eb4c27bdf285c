package measure

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestParallelRunsEachIndexOnce(t *testing.T) {
	var seen [1000]atomic.Int32
	var inFlight, most atomic.Int32
	err := Parallel(context.Background(), 4, len(seen), func(ctx context.Context, i int) error {
		if n := inFlight.Add(1); n > most.Load() {
			most.Store(n)
		}
		defer inFlight.Add(-1)
		seen[i].Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("index %d ran %d times", i, n)
		}
	}
	if most.Load() > 4 {
		t.Errorf("%d calls at once, at most 4 asked", most.Load())
	}
}

func TestParallelStopsAtTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int32
	err := Parallel(context.Background(), 2, 1000, func(ctx context.Context, i int) error {
		calls.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if n := calls.Load(); n >= 1000 {
		t.Errorf("%d calls after the error", n)
	}
}

func TestCPUClocksAdvance(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p0, t0 := ProcessCPU(), ThreadCPU()
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if d := ThreadCPU() - t0; d < 20*time.Millisecond {
		t.Errorf("thread CPU advanced %v over 50 ms of spinning", d)
	}
	if d := ProcessCPU() - p0; d < 20*time.Millisecond {
		t.Errorf("process CPU advanced %v over 50 ms of spinning", d)
	}
}

func TestPostgresIsLocal(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://postgres@127.0.0.1:5432/test":    true,
		"postgres://u:p@localhost/db":                true,
		"postgres:///db?host=/var/run/postgresql":    true,
		"postgres://u@db.example.com:5432/keyholder": false,
		"postgresql://u@[::1]:5432/x":                true,
	} {
		if got := PostgresIsLocal(dsn); got != want {
			t.Errorf("PostgresIsLocal(%q) = %v, want %v", dsn, got, want)
		}
	}
}

// PidCPU reads /proc as ProcessCPU reads getrusage: for this process the
// two agree to the clock's tick.
func TestPidCPUReadsProc(t *testing.T) {
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	self, proc := ProcessCPU(), PidCPU(os.Getpid())
	if proc <= 0 || proc > self+20*time.Millisecond || self > proc+20*time.Millisecond {
		t.Errorf("PidCPU(self) = %v, ProcessCPU = %v", proc, self)
	}
	if PidCPU(-1) != 0 {
		t.Error("PidCPU of no process is not 0")
	}
}
