package sim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/internal/server/servertest"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

const simAdminToken = "device-sim-test-admin-token"

// simEnv is a server in this process, behind a handler that counts the
// calls and can answer some of them with a fault instead.
type simEnv struct {
	t     *testing.T
	st    *store.Store
	ts    *httptest.Server
	admin *client.Client

	mu    sync.Mutex
	hits  map[string]int            // "METHOD /path" → calls
	fault func(r *http.Request) int // a status to answer instead, or 0
	log   bytes.Buffer
}

func newSimEnv(t *testing.T) *simEnv {
	t.Helper()
	e := &simEnv{t: t, hits: map[string]int{}}
	srv := servertest.Start(t, simAdminToken, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.mu.Lock()
			e.hits[r.Method+" "+r.URL.Path]++
			f := e.fault
			e.mu.Unlock()
			if f != nil {
				if code := f(r); code != 0 {
					w.Header().Set("Content-Type", api.ContentTypeProblemJSON)
					w.WriteHeader(code)
					io.WriteString(w, `{"type":"https://keyholder.dev/problems/unavailable","title":"Service unavailable","status":503}`)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	e.ts, e.st = srv.Server, srv.Store
	var err error
	e.admin, err = client.New(e.ts.URL, client.WithAdminToken(simAdminToken))
	if err != nil {
		t.Fatal(err)
	}
	prev := logOut
	logOut = &syncWriter{w: &e.log, mu: &e.mu}
	t.Cleanup(func() { logOut = prev })
	return e
}

type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (e *simEnv) setFault(f func(r *http.Request) int) {
	e.mu.Lock()
	e.fault = f
	e.mu.Unlock()
}

func (e *simEnv) calls(method, path string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hits[method+" "+path]
}

func (e *simEnv) logText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

func (e *simEnv) keyClient(k *envelope.Key) *client.Client {
	e.t.Helper()
	id, err := client.IdentityFromKey(k)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := client.New(e.ts.URL, client.WithIdentity(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func genKey(t *testing.T, name string) *envelope.Key {
	t.Helper()
	k, err := envelope.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newDevice enrolls a device for a new user; it approves and grants
// everything (the policy is not what these tests are about).
func (e *simEnv) newDevice(ctx context.Context) (*device, string) {
	e.t.Helper()
	u, err := e.admin.CreateUser(ctx, "alice")
	if err != nil {
		e.t.Fatal(err)
	}
	k := genKey(e.t, "phone")
	c := e.keyClient(k)
	r, err := c.Enroll(ctx, u.Code, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := loadPins(e.t.TempDir())
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := &config{Server: e.ts.URL, DeviceID: r.DeviceID, UserID: r.UserID, Fingerprint: r.Fingerprint}
	return newDeviceRunner(cfg, c, &Policy{Default: Rule{Submissions: approve, Reads: grant}}, p), u.ID
}

// newParty registers a party key and returns its client.
func (e *simEnv) newParty(ctx context.Context, name string, k *envelope.Key) (*client.Client, *api.Party) {
	e.t.Helper()
	p, err := e.admin.CreateParty(ctx, name, k.Public().Armor())
	if err != nil {
		e.t.Fatal(err)
	}
	return e.keyClient(k), p
}

func (e *simEnv) seal(ctx context.Context, c *client.Client, user, text string) string {
	e.t.Helper()
	up, err := c.SealAndUpload(ctx, user, strings.NewReader(text), client.UploadOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return up.Record.ID
}

func (e *simEnv) state(id string) string {
	e.t.Helper()
	var r store.Record
	if err := store.First(e.st.DB(context.Background()), &r, "id = ?", id); err != nil {
		e.t.Fatal(err)
	}
	return r.State
}

// newSimFlow is a server, a device of a new user and a party "lab", with
// a context that ends with the test (at most a minute).
func newSimFlow(t *testing.T) (*simEnv, context.Context, *device, string, *client.Client) {
	e := newSimEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	d, user := e.newDevice(ctx)
	lab, _ := e.newParty(ctx, "lab", genKey(t, "lab"))
	return e, ctx, d, user, lab
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLocalFailureIsNotRetried: an access request that the device cannot
// answer because of its own checks (here: the requester's v6 key cannot
// receive a compat record; the request is written straight to the
// database, as a server without the 422 would have let it through) ends
// at once: fetched once, no grant sent, refused, logged, not retried, and
// the request after it is answered without waiting. Before, retry() took
// the local rewrap error for a transient one and held the only worker for
// two minutes.
func TestLocalFailureIsNotRetried(t *testing.T) {
	e, ctx, d, user, lab := newSimFlow(t)
	rec := e.seal(ctx, lab, user, "results")
	if err := d.runOnce(ctx); err != nil || e.state(rec) != store.StateApproved {
		t.Fatalf("approval: %v, record %s", err, e.state(rec))
	}

	ent, err := openpgp.NewEntity("v6 party", "", "", &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519,
		AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ent.Serialize(&buf)
	v6, err := envelope.ParseKey(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	v6Party, err := e.admin.CreateParty(ctx, "v6 party", v6.Armor())
	if err != nil {
		t.Fatal(err)
	}
	bad := store.NewID()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	err = e.st.Apply(ctx, store.Actor{Kind: store.ActorSystem, ID: "test"}, func(tx *store.Tx) error {
		return tx.DB.Create(&store.Request{ID: bad, Kind: store.KindAccess, RecordID: rec, UserID: user, PartyID: v6Party.ID,
			Purpose: "old server", GrantExpires: &exp, State: store.RequestOpen, ExpiresAt: exp}).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the good request is listed after the bad one
	bank, _ := e.newParty(ctx, "bank", genKey(t, "bank"))
	good, err := bank.RequestAccess(ctx, rec, "loan", 600)
	if err != nil {
		t.Fatal(err)
	}

	if err := d.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bank.RecordGrant(ctx, rec); err != nil {
		t.Fatalf("the good request was not granted: %v (log:\n%s)", err, e.logText())
	}
	if n := e.calls("GET", "/v1/device/requests/"+bad); n != 1 {
		t.Errorf("the failing request was fetched %d times, want once", n)
	}
	if n := e.calls("POST", "/v1/device/requests/"+bad+"/grant"); n != 0 {
		t.Errorf("a grant was sent for the failing request %d times", n)
	}
	if n := strings.Count(e.logText(), "request "+bad+" FAILED the device's checks"); n != 1 {
		t.Errorf("the failure is logged %d times, want once:\n%s", n, e.logText())
	}
	var q store.Request
	if err := store.First(e.st.DB(ctx), &q, "id = ?", bad); err != nil || q.Answer != store.AnswerRefused {
		t.Errorf("the failing request is %s/%s, want refused (%v)", q.State, q.Answer, err)
	}
	_ = good
}

// TestTransientFailureDoesNotHoldOthers: while the server answers 503 to
// the approval of record A (a fault injected in front of it), record B,
// submitted after A, is approved; A is tried again with back-off and
// approved once the fault is gone. Before, with one worker, A's retries
// held B for up to two minutes.
func TestTransientFailureDoesNotHoldOthers(t *testing.T) {
	e, ctx, d, user, lab := newSimFlow(t)
	a := e.seal(ctx, lab, user, "record A")
	time.Sleep(10 * time.Millisecond) // A is listed first
	b := e.seal(ctx, lab, user, "record B")

	var reqA string
	reqs, err := d.c.DeviceRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.RecordID == a {
			reqA = r.ID
		}
	}
	e.setFault(func(r *http.Request) int {
		if r.Method == "POST" && r.URL.Path == "/v1/device/requests/"+reqA+"/approve" {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	done := make(chan error, 1)
	go func() { done <- d.runOnce(ctx) }()
	waitUntil(t, "record B is approved", func() bool { return e.state(b) == store.StateApproved })
	if e.state(a) != store.StatePending {
		t.Fatal("record A approved through the fault")
	}
	waitUntil(t, "A's approval is tried again", func() bool { return e.calls("POST", "/v1/device/requests/"+reqA+"/approve") >= 2 })
	e.setFault(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.state(a) != store.StateApproved {
		t.Fatalf("record A is %s after the fault ended (log:\n%s)", e.state(a), e.logText())
	}
}
