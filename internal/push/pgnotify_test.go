package push

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDSN returns the PostgreSQL DSN for integration tests or skips.
func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KEYHOLDER_TEST_POSTGRES not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping PostgreSQL LISTEN/NOTIFY test")
	}
	return dsn
}

// testChannel is unique per test so concurrent test runs (and other
// packages' tests) on the same database never see each other's events.
func testChannel() string {
	return "keyholder_push_test_" + NewRequestID()[:16]
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// replica is one simulated keyholderd instance: its own hub and broadcaster.
type replica struct {
	hub *Local
	b   *PGBroadcaster
}

func newReplica(t *testing.T, dsn, channel string) replica {
	return newReplicaPing(t, dsn, channel, 0)
}

func newReplicaPing(t *testing.T, dsn, channel string, ping time.Duration) replica {
	t.Helper()
	hub := NewLocal(LocalOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := NewPGBroadcaster(ctx, dsn, hub, PGOptions{
		Channel:      channel,
		MinBackoff:   10 * time.Millisecond,
		MaxBackoff:   100 * time.Millisecond,
		PingInterval: ping,
		Logger:       quietLog,
		Metrics:      NewMetrics(),
	})
	if err != nil {
		t.Fatalf("NewPGBroadcaster: %v", err)
	}
	t.Cleanup(func() { b.Close(); hub.Close() })
	return replica{hub: hub, b: b}
}

func TestPGBroadcasterAcrossReplicas(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a, b := newReplica(t, dsn, ch), newReplica(t, dsn, ch)

	onA, c1 := a.hub.Subscribe("dev-1")
	defer c1()
	onB, c2 := b.hub.Subscribe("dev-1")
	defer c2()
	otherOnB, c3 := b.hub.Subscribe("dev-2")
	defer c3()

	ctx := context.Background()
	tests := []struct {
		name      string
		via       replica
		device    string
		receivers []<-chan Event
		silent    []<-chan Event
	}{
		{"A to device on both", a, "dev-1", []<-chan Event{onA, onB}, []<-chan Event{otherOnB}},
		{"B to device on B only", b, "dev-2", []<-chan Event{otherOnB}, []<-chan Event{onA, onB}},
		{"A to device on B only", a, "dev-2", []<-chan Event{otherOnB}, []<-chan Event{onA, onB}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := NewRequestID()
			if err := tc.via.b.Notify(ctx, Target{DeviceID: tc.device}, id); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			for _, r := range tc.receivers {
				if ev := recv(t, r); ev.RequestID != id {
					t.Fatalf("got request %q, want %q", ev.RequestID, id)
				}
			}
			for _, s := range tc.silent {
				noEvent(t, s, 100*time.Millisecond)
			}
		})
	}
}

// TestPGNotifyPayload pins what goes through PostgreSQL: the request id and
// the device id for routing, nothing more.
func TestPGNotifyPayload(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a := newReplica(t, dsn, ch)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spy, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close(context.Background())
	if _, err := spy.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	id := NewRequestID()
	if err := a.b.Notify(ctx, Target{DeviceID: "dev 1", Kind: KindFCM, Token: "secret-fcm-token"}, id); err != nil {
		t.Fatal(err)
	}
	n, err := spy.WaitForNotification(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := id + " dev 1"; n.Payload != want {
		t.Fatalf("NOTIFY payload = %q, want %q", n.Payload, want)
	}
}

// TestPGBroadcasterReconnects kills replica B's LISTEN backend. B must
// reconnect, drop its subscribers so devices resync from the database, and
// then receive events again.
func TestPGBroadcasterReconnects(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a, b := newReplica(t, dsn, ch), newReplica(t, dsn, ch)
	stale, cancelStale := b.hub.Subscribe("dev")
	defer cancelStale()

	oldPID := b.b.listenerPID.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var killed bool
	if err := a.b.pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(oldPID)).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", oldPID, killed, err)
	}

	waitClosed(t, stale) // resync: the device must reconnect and replay
	if pid := b.b.listenerPID.Load(); pid == 0 || pid == oldPID {
		t.Fatalf("listener pid after reconnect = %d (old %d)", pid, oldPID)
	}
	if got := counterValue(t, b.b.opts.Metrics, "keyholder_push_pg_reconnects_total", nil); got != 1 {
		t.Fatalf("reconnect counter = %v, want 1", got)
	}

	fresh, cancelFresh := b.hub.Subscribe("dev")
	defer cancelFresh()
	id := NewRequestID()
	if err := a.b.Notify(ctx, Target{DeviceID: "dev"}, id); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, fresh); ev.RequestID != id {
		t.Fatalf("got %q, want %q", ev.RequestID, id)
	}
}

// TestPGBroadcasterIdlePings: an idle LISTEN connection is pinged after
// each PingInterval; that must neither drop it nor lose later events.
func TestPGBroadcasterIdlePings(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a, b := newReplica(t, dsn, ch), newReplicaPing(t, dsn, ch, 20*time.Millisecond)
	events, cancel := b.hub.Subscribe("dev")
	defer cancel()
	pid := b.b.listenerPID.Load()
	time.Sleep(150 * time.Millisecond) // several idle timeouts and pings
	id := NewRequestID()
	if err := a.b.Notify(context.Background(), Target{DeviceID: "dev"}, id); err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, events); ev.RequestID != id {
		t.Fatalf("got %q, want %q", ev.RequestID, id)
	}
	if got := b.b.listenerPID.Load(); got != pid {
		t.Fatalf("listener reconnected (pid %d -> %d); idle pings should keep it", pid, got)
	}
}

func TestPGBroadcasterValidatesAndCloses(t *testing.T) {
	dsn := testDSN(t)
	r := newReplica(t, dsn, testChannel())
	ctx := context.Background()
	tests := []struct {
		name    string
		target  Target
		reqID   string
		wantErr error
	}{
		{"bad request id", Target{DeviceID: "dev"}, "dev secret", ErrBadRequestID},
		{"no device", Target{}, NewRequestID(), ErrBadTarget},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.b.Notify(ctx, tc.target, tc.reqID); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Notify = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if err := r.b.Close(); err != nil {
		t.Fatal(err)
	}
	r.b.Close() // idempotent
	if err := r.b.Notify(ctx, Target{DeviceID: "dev"}, NewRequestID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Notify after Close = %v, want ErrClosed", err)
	}
}

// TestNewPGBroadcasterFailsFast needs no database: an unreachable server
// is an error at construction, and the password stays out of it.
func TestNewPGBroadcasterFailsFast(t *testing.T) {
	tests := []struct {
		name, dsn string
	}{
		{"unreachable", "postgres://u:hunter2secret@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"},
		{"unparsable", "postgres://u:hunter2secret@[bad/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			b, err := NewPGBroadcaster(ctx, tc.dsn, NewLocal(LocalOptions{}), PGOptions{Logger: quietLog})
			if err == nil {
				b.Close()
				t.Fatal("NewPGBroadcaster succeeded")
			}
			if strings.Contains(err.Error(), "hunter2secret") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	if _, err := NewPGBroadcaster(context.Background(), "postgres://127.0.0.1/x", NewLocal(LocalOptions{}), PGOptions{Channel: "Bad-Name"}); err == nil {
		t.Fatal("invalid channel accepted")
	}
}

// cutNotifyConnections terminates every connection of b's NOTIFY pool on
// the server side and waits until PostgreSQL no longer lists them; the
// pool still holds them and finds out at their next use.
func cutNotifyConnections(t *testing.T, b *PGBroadcaster, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conns := b.pool.AcquireAllIdle(ctx)
	if len(conns) == 0 {
		t.Fatal("the NOTIFY pool holds no connection to cut")
	}
	var pids []int32
	for _, c := range conns {
		pids = append(pids, int32(c.Conn().PgConn().PID()))
		c.Release()
	}
	killer, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(context.Background())
	for _, pid := range pids {
		if _, err := killer.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
	}
	for {
		var n int
		if err := killer.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPGNotifyAfterConnectionCut: the NOTIFY connections of replica A are
// cut (as a database restart or a proxy would); the next Notify on A
// still succeeds and reaches the device on B, because a failed NOTIFY is
// tried again on a fresh connection. Before, it failed with "push failed"
// and the request waited for the device to reconnect.
func TestPGNotifyAfterConnectionCut(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a, b := newReplica(t, dsn, ch), newReplica(t, dsn, ch)
	events, cancel := b.hub.Subscribe("dev")
	defer cancel()
	ctx := context.Background()
	if err := a.b.Notify(ctx, Target{DeviceID: "dev"}, NewRequestID()); err != nil {
		t.Fatal(err)
	}
	recv(t, events)

	cutNotifyConnections(t, a.b, dsn)
	id := NewRequestID()
	if err := a.b.Notify(ctx, Target{DeviceID: "dev"}, id); err != nil {
		t.Fatalf("Notify after the connection was cut: %v", err)
	}
	if ev := recv(t, events); ev.RequestID != id {
		t.Fatalf("got %q, want %q", ev.RequestID, id)
	}
}

// TestPGNotifyFallsBackToLocalHub: when NOTIFY cannot be sent at all (here
// its pool is closed under it), Notify reports the error and publishes the
// event into its own replica's hub, so a device connected there hears of
// the request at once.
func TestPGNotifyFallsBackToLocalHub(t *testing.T) {
	dsn := testDSN(t)
	a := newReplica(t, dsn, testChannel())
	a.b.opts.NotifyTimeout = 200 * time.Millisecond
	events, cancel := a.hub.Subscribe("dev")
	defer cancel()
	a.b.pool.Close()
	id := NewRequestID()
	if err := a.b.Notify(context.Background(), Target{DeviceID: "dev"}, id); err == nil {
		t.Fatal("Notify without a pool succeeded")
	}
	if ev := recv(t, events); ev.RequestID != id {
		t.Fatalf("got %q, want %q", ev.RequestID, id)
	}
}

// TestPGNotifyAll: signals sent in one statement reach every replica's
// subscribers, each its own; an invalid signal sends none of them.
func TestPGNotifyAll(t *testing.T) {
	dsn := testDSN(t)
	ch := testChannel()
	a, b := newReplica(t, dsn, ch), newReplica(t, dsn, ch)
	one, c1 := b.hub.Subscribe("waiter-1")
	defer c1()
	two, c2 := b.hub.Subscribe("waiter-2")
	defer c2()
	self, c3 := a.hub.Subscribe("waiter-1")
	defer c3()
	ctx := context.Background()
	id1, id2 := NewRequestID(), NewRequestID()
	if err := a.b.NotifyAll(ctx, []Signal{{Target{DeviceID: "waiter-1"}, id1}, {Target{DeviceID: "waiter-2"}, id2}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ch   <-chan Event
		want string
	}{{one, id1}, {two, id2}, {self, id1}} {
		if ev := recv(t, c.ch); ev.RequestID != c.want {
			t.Fatalf("got %q, want %q", ev.RequestID, c.want)
		}
	}
	err := a.b.NotifyAll(ctx, []Signal{{Target{DeviceID: "waiter-1"}, NewRequestID()}, {Target{DeviceID: "waiter-2"}, "bad id"}})
	if !errors.Is(err, ErrBadRequestID) {
		t.Fatalf("an invalid signal: %v", err)
	}
	noEvent(t, one, 100*time.Millisecond)
}

// watchLog records a Watcher's calls in order.
type watchLog struct {
	mu    sync.Mutex
	calls []string
}

func (w *watchLog) Listening()           { w.add("listening") }
func (w *watchLog) Heard(payload string) { w.add("heard " + payload) }
func (w *watchLog) Lost()                { w.add("lost") }
func (w *watchLog) add(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, s)
}
func (w *watchLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.calls, " ")
}

// TestPGBroadcasterWatch: the watcher hears Listening once the LISTEN is
// active, Heard with its payload for each notification on its channel
// (and nothing of the push channel's), Lost as soon as the connection
// breaks, and Listening when it LISTENs again.
func TestPGBroadcasterWatch(t *testing.T) {
	dsn := testDSN(t)
	ch, watch := testChannel(), testChannel()
	w := &watchLog{}
	hub := NewLocal(LocalOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := NewPGBroadcaster(ctx, dsn, hub, PGOptions{Channel: ch, MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Logger: quietLog, Watch: w, WatchChannel: watch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); hub.Close() })
	if got := w.String(); got != "listening" {
		t.Fatalf("after NewPGBroadcaster: %q, want listening", got)
	}
	if err := b.Notify(ctx, Target{DeviceID: "dev"}, NewRequestID()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, "SELECT pg_notify($1, 'any payload')", watch); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.String() == "listening heard any payload" })

	old := b.listenerPID.Load()
	if _, err := b.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(old)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return w.String() == "listening heard any payload lost listening" })

	for _, bad := range []string{"", ch, "Bad-Channel"} {
		if _, err := NewPGBroadcaster(ctx, dsn, hub, PGOptions{Channel: ch, Watch: w, WatchChannel: bad}); err == nil {
			t.Errorf("watch channel %q was accepted", bad)
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
