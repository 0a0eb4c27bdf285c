package main

// The end-to-end measurement: parties ask, the device answers with its
// real cryptography.

import (
	"context"
	"fmt"
	"math"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/pkg/client"
)

type waiters struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (w *waiters) get(id string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.m[id]
	if ch == nil {
		ch = make(chan struct{}, 1)
		w.m[id] = ch
	}
	return ch
}

func (w *waiters) drop(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

type result struct {
	n       int
	wall    time.Duration
	lat     []time.Duration
	cpu     cpu
	retries int64
}

func (r result) rate() float64 { return float64(r.n) / r.wall.Seconds() }

func pct(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// device answers access requests from its event stream with W workers
// until ctx ends; done is told of each grant.
type device struct {
	w    *world
	wt   *waiters
	seen sync.Map
	errs atomic.Pointer[error]
	dups atomic.Int64
}

func (d *device) run(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	connected := make(chan struct{})
	var once sync.Once
	events := d.w.device.Subscribe(ctx, client.SubscribeOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnConnect: func() { once.Do(func() { close(connected) }) }})
	var wg sync.WaitGroup
	labels := pprof.Labels("side", "device")
	for range *workersN {
		wg.Add(1)
		go pprof.Do(ctx, labels, func(ctx context.Context) {
			defer wg.Done()
			for ev := range events {
				if _, dup := d.seen.LoadOrStore(ev.RequestID, true); dup {
					d.dups.Add(1)
					continue
				}
				if err := d.answer(ctx, ev.RequestID); err != nil && ctx.Err() == nil {
					d.errs.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
	}
	return func() { cancel(); wg.Wait() }
}

func (d *device) answer(ctx context.Context, id string) error {
	det, err := d.w.device.DeviceRequest(ctx, id)
	if err != nil {
		return fmt.Errorf("device: fetching request: %w", err)
	}
	if det.Kind != client.KindAccess || det.State != "open" {
		return nil
	}
	// As a device does it: its chain (served with the request) checked
	// on every request, then the request against it.
	cr, err := d.w.device.Check(ctx, det)
	if err != nil {
		return fmt.Errorf("device: checking request: %w", err)
	}
	if _, err := d.w.device.GrantRequest(ctx, cr, time.Time{}); err != nil {
		if client.IsConflict(err) { // answered already (an event seen twice)
			d.dups.Add(1)
			return nil
		}
		return fmt.Errorf("device: grant: %w", err)
	}
	d.wt.get(id) <- struct{}{}
	return nil
}

// endToEnd runs n grants: K parties ask and wait, the device answers.
func endToEnd(ctx context.Context, w *world, n int, prof string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	wt := &waiters{m: map[string]chan struct{}{}}
	dev := &device{w: w, wt: wt}
	stopDev := dev.run(ctx)
	defer stopDev()
	if prof != "" {
		stop, err := cpuprofile.Start(prof)
		if err != nil {
			return result{}, err
		}
		defer stop()
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	fail := func(err error) {
		if firstErr.CompareAndSwap(nil, &err) {
			cancel()
		}
	}
	c0, t0 := cpuNow(w.s.pgLocal), time.Now()
	var wg sync.WaitGroup
	labels := pprof.Labels("side", "party")
	for k := range *concurrent {
		wg.Add(1)
		go pprof.Do(ctx, labels, func(ctx context.Context) {
			defer wg.Done()
			party := w.parties[k%len(w.parties)]
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				rec := w.records[i%len(w.records)]
				start := time.Now()
				ar, err := party.RequestAccess(ctx, rec, "benchmark read", 3600)
				if err != nil {
					fail(fmt.Errorf("party: access request: %w", err))
					return
				}
				ch := wt.get(ar.RequestID)
				select {
				case <-ch:
				case <-ctx.Done():
					fail(fmt.Errorf("grant of request %s did not come: %w", ar.RequestID, ctx.Err()))
					return
				}
				wt.drop(ar.RequestID)
				if *fetch {
					if _, err := party.RecordGrant(ctx, rec); err != nil {
						fail(fmt.Errorf("party: fetching grant: %w", err))
						return
					}
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	r := result{n: n, wall: time.Since(t0), lat: lat, cpu: cpuNow(w.s.pgLocal).sub(c0), retries: dev.dups.Load()}
	if p := firstErr.Load(); p != nil {
		return r, *p
	}
	if p := dev.errs.Load(); p != nil {
		return r, *p
	}
	return r, ctx.Err()
}
