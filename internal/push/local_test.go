package push

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// recv waits briefly for one event; a closed channel or a timeout fails.
func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("channel closed, want an event")
		}
		return ev
	case <-time.After(3 * time.Second):
		t.Fatal("no event within 3s")
	}
	return Event{}
}

// noEvent asserts nothing arrives within a short grace period.
func noEvent(t *testing.T, ch <-chan Event, wait time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("unexpected event %+v", ev)
		}
		t.Fatal("channel closed unexpectedly")
	case <-time.After(wait):
	}
}

// waitClosed asserts the channel gets closed (after draining buffered events).
func waitClosed(t *testing.T, ch <-chan Event) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed within 5s")
		}
	}
}

func TestLocalRoutesByDevice(t *testing.T) {
	h := NewLocal(LocalOptions{})
	a1, cancelA1 := h.Subscribe("dev-a")
	defer cancelA1()
	a2, cancelA2 := h.Subscribe("dev-a") // a second connection of the same device
	defer cancelA2()
	b, cancelB := h.Subscribe("dev-b")
	defer cancelB()

	id1, id2 := NewRequestID(), NewRequestID()
	if err := h.Notify(context.Background(), Target{DeviceID: "dev-a"}, id1); err != nil {
		t.Fatal(err)
	}
	if err := h.Notify(context.Background(), Target{DeviceID: "dev-a"}, id2); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan Event{a1, a2} {
		e1, e2 := recv(t, ch), recv(t, ch)
		if e1.RequestID != id1 || e2.RequestID != id2 {
			t.Fatalf("got %q, %q; want %q, %q in order", e1.RequestID, e2.RequestID, id1, id2)
		}
		if e1.ID == 0 || e2.ID <= e1.ID {
			t.Fatalf("event ids %d, %d are not increasing", e1.ID, e2.ID)
		}
	}
	noEvent(t, b, 50*time.Millisecond)

	// Nobody listening is fine: the device gets it on its next replay.
	if err := h.Notify(context.Background(), Target{DeviceID: "dev-offline"}, NewRequestID()); err != nil {
		t.Fatalf("Notify to offline device: %v", err)
	}
}

func TestLocalNotifyValidates(t *testing.T) {
	h := NewLocal(LocalOptions{})
	ch, cancel := h.Subscribe("dev")
	defer cancel()
	canceled, stop := context.WithCancel(context.Background())
	stop()
	tests := []struct {
		name    string
		ctx     context.Context
		target  Target
		reqID   string
		wantErr error
	}{
		{"bad request id", context.Background(), Target{DeviceID: "dev"}, "user:alice", ErrBadRequestID},
		{"no device", context.Background(), Target{}, NewRequestID(), ErrBadTarget},
		{"huge device id", context.Background(), Target{DeviceID: string(make([]byte, maxDeviceIDLen+1))}, NewRequestID(), ErrBadTarget},
		{"canceled context", canceled, Target{DeviceID: "dev"}, NewRequestID(), context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := h.Notify(tc.ctx, tc.target, tc.reqID); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Notify = %v, want %v", err, tc.wantErr)
			}
		})
	}
	noEvent(t, ch, 20*time.Millisecond)
}

func TestLocalSlowSubscriberIsCutOffNotBlocking(t *testing.T) {
	m := NewMetrics()
	h := NewLocal(LocalOptions{Buffer: 2, Metrics: m})
	// No deferred cancels: if Notify ever blocks while holding the hub's
	// lock, they would hang the test instead of letting it fail.
	slow, cancelSlow := h.Subscribe("dev")
	fast, cancelFast := h.Subscribe("dev")

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 10; i++ {
			if err := h.Notify(context.Background(), Target{DeviceID: "dev"}, NewRequestID()); err != nil {
				t.Error(err)
			}
			recv(t, fast) // the reading subscriber keeps up and is never cut off
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Notify blocked on a subscriber that does not read")
	}

	// The slow one got what fit in its buffer, then its channel was closed
	// so the handler ends and the device reconnects to replay.
	recv(t, slow)
	recv(t, slow)
	if _, ok := <-slow; ok {
		t.Fatal("overflowed subscriber still open")
	}
	if n := h.Subscribers("dev"); n != 1 {
		t.Fatalf("Subscribers = %d, want 1 (only the fast one)", n)
	}
	if got := counterValue(t, m, "keyholder_push_local_overflow_total", nil); got != 1 {
		t.Fatalf("overflow counter = %v, want 1", got)
	}
	cancelSlow() // cancel after an overflow close must not panic
	cancelFast()
}

func TestLocalCancelAndClose(t *testing.T) {
	h := NewLocal(LocalOptions{})
	ch, cancel := h.Subscribe("dev")
	other, cancelOther := h.Subscribe("dev2")
	defer cancelOther()
	cancel()
	cancel() // idempotent
	waitClosed(t, ch)
	if n := h.Subscribers("dev"); n != 0 {
		t.Fatalf("Subscribers after cancel = %d", n)
	}

	h.Close()
	waitClosed(t, other) // shutdown ends every stream
	late, cancelLate := h.Subscribe("dev")
	defer cancelLate()
	waitClosed(t, late)
	if err := h.Notify(context.Background(), Target{DeviceID: "dev"}, NewRequestID()); err != nil {
		t.Fatalf("Notify on closed hub: %v", err)
	}

	empty, cancelEmpty := NewLocal(LocalOptions{}).Subscribe("")
	defer cancelEmpty()
	waitClosed(t, empty)
}

// TestLocalConcurrent is for the race detector: subscribe, notify, cancel
// and disconnect at the same time.
func TestLocalConcurrent(t *testing.T) {
	h := NewLocal(LocalOptions{Buffer: 4})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		dev := fmt.Sprintf("dev-%d", i%3)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				ch, cancel := h.Subscribe(dev)
				select {
				case <-ch:
				default:
				}
				cancel()
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				_ = h.Notify(context.Background(), Target{DeviceID: dev}, NewRequestID())
				if j%25 == 0 {
					h.disconnectAll()
				}
			}
		}()
	}
	wg.Wait()
}

// counterValue gathers m through a fresh registry (never the global one)
// and returns the value of the named counter with exactly these labels.
func counterValue(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatalf("register metrics: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, mt := range mf.GetMetric() {
			if len(mt.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range mt.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return mt.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// TestLocalNotifyAll: each signal reaches its target's subscribers; an
// invalid one publishes none.
func TestLocalNotifyAll(t *testing.T) {
	h := NewLocal(LocalOptions{})
	defer h.Close()
	a, ca := h.Subscribe("a")
	defer ca()
	b, cb := h.Subscribe("b")
	defer cb()
	ctx := context.Background()
	ida, idb := NewRequestID(), NewRequestID()
	if err := h.NotifyAll(ctx, []Signal{{Target{DeviceID: "a"}, ida}, {Target{DeviceID: "b"}, idb}}); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, a); ev.RequestID != ida {
		t.Fatalf("a got %q", ev.RequestID)
	}
	if ev := recv(t, b); ev.RequestID != idb {
		t.Fatalf("b got %q", ev.RequestID)
	}
	if err := h.NotifyAll(ctx, []Signal{{Target{DeviceID: "a"}, NewRequestID()}, {Target{}, NewRequestID()}}); !errors.Is(err, ErrBadTarget) {
		t.Fatalf("an invalid target: %v", err)
	}
	noEvent(t, a, 50*time.Millisecond)
}
