package push

import (
	"context"
	"testing"
	"time"
)

// TestLocalDisconnect: Disconnect closes every stream of one device and no
// other; the device can subscribe again afterwards.
func TestLocalDisconnect(t *testing.T) {
	h := NewLocal(LocalOptions{})
	a1, c1 := h.Subscribe("dev-a")
	defer c1()
	a2, c2 := h.Subscribe("dev-a")
	defer c2()
	b, c3 := h.Subscribe("dev-b")
	defer c3()
	if err := h.Disconnect(context.Background(), "dev-a"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, a1)
	waitClosed(t, a2)
	if h.Subscribers("dev-a") != 0 || h.Subscribers("dev-b") != 1 {
		t.Fatalf("subscribers: a %d, b %d", h.Subscribers("dev-a"), h.Subscribers("dev-b"))
	}
	id := NewRequestID()
	if err := h.Notify(context.Background(), Target{DeviceID: "dev-b"}, id); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, b); ev.RequestID != id {
		t.Fatalf("dev-b got %+v", ev)
	}
	c1() // cancel after Disconnect is a no-op
	h.Disconnect(context.Background(), "nobody")
	again, c4 := h.Subscribe("dev-a")
	defer c4()
	h.Notify(context.Background(), Target{DeviceID: "dev-a"}, id)
	recv(t, again)
}

// TestMultiDisconnect goes through the local channel.
func TestMultiDisconnect(t *testing.T) {
	h := NewLocal(LocalOptions{})
	s, cancel := h.Subscribe("dev-a")
	defer cancel()
	var m Disconnecter = NewMulti(h, nil, nil)
	if err := m.Disconnect(context.Background(), "dev-a"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, s)
}

// TestPGBroadcasterDisconnect: a Disconnect on replica A ends the device's
// streams on A and on B, and no other device's.
func TestPGBroadcasterDisconnect(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a, b := newReplica(t, dsn, ch), newReplica(t, dsn, ch)
	onA, c1 := a.hub.Subscribe("dev-1")
	defer c1()
	onB, c2 := b.hub.Subscribe("dev-1")
	defer c2()
	other, c3 := b.hub.Subscribe("dev-2")
	defer c3()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.b.Disconnect(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, onA)
	waitClosed(t, onB)
	id := NewRequestID()
	if err := a.b.Notify(ctx, Target{DeviceID: "dev-2"}, id); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, other); ev.RequestID != id {
		t.Fatalf("dev-2 got %+v", ev)
	}
	if err := a.b.Disconnect(ctx, ""); err != ErrBadTarget {
		t.Fatalf("empty device id: %v", err)
	}
}
