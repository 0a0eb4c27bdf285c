package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// sse connects to the device event stream and returns its data lines.
func (e *env) sse(d *device) (<-chan string, func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+api.PathDeviceEvents, nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data: ") {
				ch <- strings.TrimPrefix(l, "data: ")
			}
		}
	}()
	return ch, func() { cancel(); resp.Body.Close() }
}

func nextEvent(t testing.TB, ch <-chan string) string {
	t.Helper()
	select {
	case l := <-ch:
		var v map[string]string
		if err := json.Unmarshal([]byte(l), &v); err != nil || len(v) != 1 || v["request"] == "" {
			t.Fatalf("event payload %q is not just a request id", l)
		}
		return v["request"]
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return ""
}

// TestPushPayloads runs a full flow with the device listening on SSE and
// checks every push (Notifier calls and SSE frames) carries only the
// opaque request id: no user id, record id, party name, title, key or
// fingerprint.
func TestPushPayloads(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("Acme Lab")
	bank := e.newParty("Big Bank")

	events, stop := e.sse(dev)
	defer stop()
	waitFor(t, func() bool { return e.hub.Subscribers(dev.id) == 1 })
	rec, _ := e.submit(lab, dev.user, []byte("results"))
	approvalID := nextEvent(t, events)
	det := e.findRequest(dev, store.KindApproval, rec.ID)
	if det.ID != approvalID {
		t.Fatal("pushed id is not the approval request")
	}
	e.approve(dev, rec.ID)
	var ar api.AccessResponse
	e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "loan"}, 202, &ar)
	if got := nextEvent(t, events); got != ar.RequestID {
		t.Fatal("pushed id is not the access request")
	}
	stop()

	// Reconnect: open requests are replayed from the database.
	events2, stop2 := e.sse(dev)
	defer stop2()
	if got := nextEvent(t, events2); got != ar.RequestID {
		t.Fatalf("replay gave %s", got)
	}

	secrets := []string{dev.user, dev.id, rec.ID, lab.id, bank.id, lab.name, bank.name, "alice", "Blood test", "results.pdf",
		dev.key.Fingerprint(), lab.key.Fingerprint(), bank.key.Fingerprint(), rec.CiphertextSHA256, "BEGIN PGP"}
	e.srv.waitPushes()
	calls := e.pushes.all()
	if len(calls) != 2 {
		t.Fatalf("%d pushes, want 2", len(calls))
	}
	for _, c := range calls {
		if !push.ValidRequestID(c.RequestID) || c.Target.Token != "" {
			t.Fatalf("push %+v", c)
		}
		for _, s := range secrets {
			if strings.Contains(strings.ToLower(c.RequestID), strings.ToLower(s)) {
				t.Fatalf("push payload %q contains %q", c.RequestID, s)
			}
		}
	}
}

// TestPushTargetGone: an FCM token the provider no longer knows is marked dead.
func TestPushTargetGone(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	e.pushes.next = push.NotifierFunc(func(ctx context.Context, tg push.Target, id string) error {
		if tg.Kind == push.KindFCM {
			return push.ErrTargetGone
		}
		return nil
	})
	_, code := e.createUser("alice")
	k := genKey(t, "phone")
	var er api.EnrollResponse
	req := e.enrollRequest(code, k)
	req.PushKind, req.PushToken = "fcm", "fcm-token-123"
	e.call("POST", api.PathEnroll, "", req, 201, &er)
	lab := e.newParty("lab")
	e.submit(lab, er.UserID, []byte("x"))
	e.srv.waitPushes() // pushes leave after the response
	var d store.Device
	store.First(e.st.DB(t.Context()), &d, "id = ?", er.DeviceID)
	if !d.PushDead {
		t.Fatal("push target not marked dead")
	}
	e.submit(lab, er.UserID, []byte("y"))
	e.srv.waitPushes()
	calls := e.pushes.all()
	if last := calls[len(calls)-1]; last.Target.Kind != push.KindLocal || last.Target.Token != "" {
		t.Fatalf("dead FCM target still used: %+v", last.Target)
	}
}

func TestSweeper(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.PendingTTL = time.Hour; c.RequestTTL = time.Hour; c.TokenTTL = 48 * time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	pending, _ := e.submit(lab, dev.user, []byte("pending"))
	approved, _ := e.submit(lab, dev.user, []byte("approved"))
	e.approve(dev, approved.ID)
	var ar api.AccessResponse
	e.call("POST", api.Path(api.PathRecordAccess, approved.ID), bank.token, api.AccessRequest{Purpose: "p"}, 202, &ar)

	if r, q, err := e.srv.Sweep(t.Context()); err != nil || r+q != 0 {
		t.Fatalf("early sweep: %d %d %v", r, q, err)
	}
	e.clock.advance(2 * time.Hour)
	r, q, err := e.srv.Sweep(t.Context())
	if err != nil || r != 1 || q != 1 {
		t.Fatalf("sweep: %d records, %d requests, %v", r, q, err)
	}
	var rec api.Record
	e.call("GET", api.Path(api.PathRecord, pending.ID), lab.token, nil, 200, &rec)
	if rec.State != api.RecordExpired {
		t.Fatalf("pending record is %s", rec.State)
	}
	e.call("GET", api.Path(api.PathRecord, approved.ID), lab.token, nil, 200, &rec)
	if rec.State != api.RecordApproved {
		t.Fatalf("approved record is %s", rec.State)
	}
	if blobs, inline := e.ciphertexts(); blobs+inline != 1 {
		t.Fatalf("%d blobs and %d ciphertexts in the database left, want the approved one", blobs, inline)
	}
	var qr store.Request
	store.First(e.st.DB(t.Context()), &qr, "id = ?", ar.RequestID)
	if qr.State != store.RequestExpired {
		t.Fatalf("access request is %s", qr.State)
	}
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.AccessRate, c.AccessBurst = rate.Limit(0.001), 2 })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("x"))
	e.approve(dev, rec.ID)
	for i := 0; i < 2; i++ {
		e.call("POST", api.Path(api.PathRecordAccess, rec.ID), lab.token, api.AccessRequest{Purpose: "p"}, 202, nil)
	}
	before := e.snap()
	resp, data := e.do("POST", api.Path(api.PathRecordAccess, rec.ID), lab.token, api.AccessRequest{Purpose: "p"})
	e.wantProblem(resp, data, 429)
	e.unchanged(before)
	// Another party has its own budget.
	bank := e.newParty("bank")
	e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "p"}, 202, nil)
}

func TestOpsEndpoints(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	e.call("GET", api.PathHealthz, "", nil, 200, nil)
	e.call("GET", api.PathReadyz, "", nil, 200, nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	recs := make([]api.Record, 3)
	for i := range recs {
		recs[i], _ = e.submit(lab, dev.user, []byte("x"))
	}
	metrics := func(want ...string) {
		t.Helper()
		resp, data := e.do("GET", api.PathMetrics, "", nil)
		if resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
		for _, w := range want {
			if !strings.Contains(string(data), w) {
				t.Errorf("metrics lack %s", w)
			}
		}
		if strings.Contains(string(data), dev.user) {
			t.Error("metrics contain an id")
		}
	}
	metrics(`keyholder_records{state="pending"} 3`, `keyholder_http_requests_total{method="POST",route="/v1/users/:id/records",status="201"} 3`,
		"keyholder_http_request_duration_seconds_bucket", "keyholder_token_cache_on 0") // SQLite: no token cache
	// Decisions: counted once each, a refused replay not at all.
	det := e.approve(dev, recs[0].ID)
	resp, data := e.do("POST", api.Path(api.PathDeviceApprove, det.ID), dev.token, signStmt(t, approvalFor(det, dev, e.clock.now()), dev.key))
	e.wantProblem(resp, data, 409)
	rdet := e.findRequest(dev, store.KindApproval, recs[1].ID)
	e.call("POST", api.Path(api.PathDeviceReject, rdet.ID), dev.token, signStmt(t, rejectionFor(rdet, dev, e.clock.now()), dev.key), 200, nil)
	metrics(`keyholder_records{state="pending"} 1`, `keyholder_records_decided_total{state="approved"} 1`,
		`keyholder_records_decided_total{state="rejected"} 1`)
}

// TestLostPushDeliveredAtHeartbeat: a push that never reaches the hub (as
// when the NOTIFY that carries it fails on PostgreSQL) still reaches a
// device whose stream stays connected: the stream re-checks the open
// requests at each heartbeat and sends the ones it has not sent, once.
// Before, such a request waited for the device to reconnect.
func TestLostPushDeliveredAtHeartbeat(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, func(c *Config) { c.SSEHeartbeat = 20 * time.Millisecond })
			var lost atomic.Bool
			lost.Store(true)
			e.pushes.next = push.NotifierFunc(func(ctx context.Context, tg push.Target, id string) error {
				if lost.Load() {
					return errors.New("injected: postgres NOTIFY: connection reset by peer")
				}
				return e.hub.Notify(ctx, tg, id)
			})
			dev := e.newUser("alice")
			lab := e.newParty("lab")
			events, stop := e.sse(dev)
			defer stop()
			waitFor(t, func() bool { return e.hub.Subscribers(dev.id) == 1 })

			rec, _ := e.submit(lab, dev.user, []byte("one"))
			e.srv.waitPushes()
			det := e.findRequest(dev, store.KindApproval, rec.ID)
			if got := nextEvent(t, events); got != det.ID {
				t.Fatalf("got %s, want the approval request %s", got, det.ID)
			}
			// Live pushes work again: the next request comes once, whether
			// live or from the re-check, and nothing is sent twice.
			lost.Store(false)
			rec2, _ := e.submit(lab, dev.user, []byte("two"))
			det2 := e.findRequest(dev, store.KindApproval, rec2.ID)
			if got := nextEvent(t, events); got != det2.ID {
				t.Fatalf("got %s, want the approval request %s", got, det2.ID)
			}
			time.Sleep(10 * e.srv.cfg.SSEHeartbeat)
			select {
			case l := <-events:
				t.Fatalf("event sent again: %s", l)
			default:
			}
		})
	}
}
