package server

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// replicas starts two servers, A and B, on one PostgreSQL database and one
// blob directory, each with its own hub fanned out through LISTEN/NOTIFY
// on a channel of their own. It skips without KEYHOLDER_TEST_POSTGRES.
func replicas(t *testing.T, mod func(*Config)) (a, b *env) {
	t.Helper()
	dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KEYHOLDER_TEST_POSTGRES is not set: two replicas need PostgreSQL")
	}
	clk := &clock{}
	stores := storetest.OpenShared(t, storetest.Backend{Name: "postgres", DSN: dsn}, clk.now, 2)
	blobDir := t.TempDir()
	channel := "kh_test_" + store.NewID()[:16]
	// Each replica's token cache hears of changes as app.New sets it up.
	broadcaster := func(st *store.Store) func(hub *push.Local) push.Notifier {
		return func(hub *push.Local) push.Notifier {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			br, err := push.NewPGBroadcaster(ctx, dsn, hub, push.PGOptions{Channel: channel, Logger: discardLogger(),
				Watch: st.TokenCache(), WatchChannel: store.AuthChannel})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { br.Close() })
			return br
		}
	}
	a = newEnvFrom(t, stores[0], clk, blobDir, broadcaster(stores[0]), mod)
	b = newEnvFrom(t, stores[1], clk, blobDir, broadcaster(stores[1]), mod)
	a.channel, b.channel = channel, channel
	return a, b
}

// TestTwoReplicasPush: the device's event stream is connected to replica
// B; a party uploads to replica A; the device receives the request id on
// B, live (not from a replay), within a few seconds. And the other way
// round for an access request.
func TestTwoReplicasPush(t *testing.T) {
	a, b := replicas(t, nil)
	dev := a.newUser("alice")
	lab := a.newParty("lab")
	bank := b.newParty("bank") // registered through B, logs in on B

	events, stop := b.sse(dev)
	defer stop()
	waitFor(t, func() bool { return b.hub.Subscribers(dev.id) == 1 })
	if a.hub.Subscribers(dev.id) != 0 {
		t.Fatal("the stream is on A")
	}
	rec, _ := a.submit(lab, dev.user, []byte("cross-replica"))
	det := a.findRequest(dev, store.KindApproval, rec.ID)
	start := time.Now()
	if got := nextEvent(t, events); got != det.ID {
		t.Fatalf("B's stream got %s, want the approval request %s", got, det.ID)
	}
	t.Logf("A → B push in %s", time.Since(start))

	// Approve on B, ask for access on B, with the device's stream on A.
	b.approve(dev, rec.ID)
	stop()
	eventsA, stopA := a.sse(dev)
	defer stopA()
	waitFor(t, func() bool { return a.hub.Subscribers(dev.id) == 1 })
	var ar struct {
		RequestID string `json:"request_id"`
	}
	b.call("POST", "/v1/records/"+rec.ID+"/access", bank.token, map[string]any{"purpose": "loan"}, 202, &ar)
	if got := nextEvent(t, eventsA); got != ar.RequestID {
		t.Fatalf("A's stream got %s, want the access request %s", got, ar.RequestID)
	}
	// The blob uploaded through A is served through B.
	b.grantAccess(dev, bank, rec.ID, 600)
	b.call("GET", "/v1/records/"+rec.ID+"/content", bank.token, nil, 200, nil)
}

// TestTwoReplicasWake: a party waiting on replica A for its record's
// decision is woken when the device approves through replica B.
func TestTwoReplicasWake(t *testing.T) {
	a, b := replicas(t, nil)
	dev := a.newUser("alice")
	lab := a.newParty("lab")
	rec, _ := a.submit(lab, dev.user, []byte("decided elsewhere"))
	ch := a.getLater(api.Path(api.PathRecord, rec.ID)+"?wait=30", lab.token)
	waitFor(t, func() bool { return a.hub.Subscribers(decidedKey(rec.ID)) == 1 })
	b.approve(dev, rec.ID)
	var r api.Record
	if w := a.waitedFor(ch, &r); r.State != api.RecordApproved || w.took > 10*time.Second {
		t.Fatalf("the waiter on A: state %s after %s", r.State, w.took)
	}
}
