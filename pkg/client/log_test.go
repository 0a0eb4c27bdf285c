package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/internal/server/servertest"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/translog"
	"github.com/keyholder/keyholder/internal/witnesstest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// The attacks of issue 10, by a hostile server: a reverse proxy in front
// of the honest test server that rewrites its answers, or the operator's
// edits of the database. Each test names who detects the attack and how.

// hostile is a reverse proxy in front of a test server whose answers a
// test may rewrite.
type hostile struct {
	*httptest.Server
	srv *servertest.Server

	mu          sync.Mutex
	rewrite     func(path string, body []byte) []byte
	checkpoints [][]byte // every checkpoint the log routes served, in order
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	h := &hostile{srv: servertest.Start(t, adminToken, nil)}
	target, _ := url.Parse(h.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.StatusCode != http.StatusOK || r.Request.Method != http.MethodGet {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		path := r.Request.URL.Path
		h.mu.Lock()
		if strings.HasPrefix(path, "/v1/log/") {
			var tp transparency.TreeProof
			if json.Unmarshal(body, &tp) == nil {
				h.checkpoints = append(h.checkpoints, []byte(tp.Checkpoint))
			}
		}
		if h.rewrite != nil {
			body = h.rewrite(path, body)
		}
		h.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	h.Server = httptest.NewServer(rp)
	t.Cleanup(h.Server.Close)
	return h
}

func (h *hostile) setRewrite(fn func(path string, body []byte) []byte) {
	h.mu.Lock()
	h.rewrite = fn
	h.mu.Unlock()
}

// rewriteLog applies fn to the tree proof of every log route answer.
func (h *hostile) rewriteLog(t *testing.T, fn func(tp *transparency.TreeProof)) {
	h.setRewrite(func(path string, body []byte) []byte {
		if !strings.HasPrefix(path, "/v1/log/") {
			return body
		}
		var m map[string]json.RawMessage
		var tp transparency.TreeProof
		if err := json.Unmarshal(body, &m); err != nil || json.Unmarshal(body, &tp) != nil {
			t.Errorf("log answer %s: %v", path, err)
			return body
		}
		fn(&tp)
		m["checkpoint"], _ = json.Marshal(tp.Checkpoint)
		m["from"], _ = json.Marshal(tp.From)
		m["consistency"], _ = json.Marshal(tp.Consistency)
		out, _ := json.Marshal(m)
		return out
	})
}

// logEnv is a test environment whose clients go through a hostile proxy.
type logEnv struct {
	*testEnv
	h *hostile
}

func newLogEnv(t *testing.T) *logEnv {
	h := newHostile(t)
	admin, err := New(h.URL, WithAdminToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	return &logEnv{testEnv: &testEnv{t: t, ts: h.Server, st: h.srv.Store, admin: admin}, h: h}
}

// logged returns a client of id that checks the log, trusting nothing yet.
func (e *logEnv) logged(id *Identity, opts ...Option) *Client {
	e.t.Helper()
	v, err := transparency.NewVerifier(servertest.LogOrigin, e.h.srv.LogVKey, nil, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	trust, err := transparency.OpenTrust(filepath.Join(e.t.TempDir(), "checkpoint"), v)
	if err != nil {
		e.t.Fatal(err)
	}
	opts = append([]Option{WithIdentity(id), WithLog(v, trust), WithLogTimeout(3 * time.Second),
		WithPollInterval(10*time.Millisecond, 100*time.Millisecond)}, opts...)
	c, err := New(e.h.URL, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// setupLogged is setup with a device and party that check the log.
func (e *logEnv) setupLogged(ctx context.Context, handle string, histories HistoryStore) (user string, dev, party *Client) {
	user, dev, party = e.setup(ctx, handle)
	return user, e.logged(dev.Identity(), WithHistoryStore(histories)), e.logged(party.Identity())
}

// The honest server passes every check: chain, approval and grant in the
// log, every decision in the user's name by the user's device.
func TestLogFullFlow(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	hs := FileHistories{Dir: t.TempDir()}
	user, dev, party := e.setupLogged(ctx, "erin", hs)
	up, err := party.SealAndUpload(ctx, user, strings.NewReader("log me"), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	if _, err := party.WaitDecided(ctx, up.Record.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := party.VerifyRecord(ctx, up.Record.ID, false, up.Recipients); err != nil {
		t.Fatal(err)
	}
	if _, err := party.RequestAccess(ctx, up.Record.ID, "read", 3600); err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	if _, err := party.WaitGrant(ctx, up.Record.ID); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, _, err := party.OpenRecordTo(ctx, up.Record.ID, &out, OpenOptions{Trusted: up.Recipients}); err != nil || out.String() != "log me" {
		t.Fatalf("open: %q %v", out.String(), err)
	}
	// The device's next connect checks the approval and the grant.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := dev.OwnChain(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := hs.History(user, transparency.Decisions)
		if err != nil {
			t.Fatal(err)
		}
		if st.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device checked %d decisions, want 2", st.Count)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if party.trust.Tree().N == 0 || dev.trust.Tree().N == 0 {
		t.Fatal("no checkpoint trusted")
	}
}

// Attack (a): the server shows a party a second chain for the user, of
// the operator's making and validly self-signed, to a party that has not
// pinned the user yet. keychain.Verify accepts it; the party's log check
// refuses it: ErrLog, "a second chain for the user".
func TestLogSecondChainDetectedByParty(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, _, party := e.setupLogged(ctx, "fred", &MemoryHistories{})
	op := identity(t, "operator-phone")
	forged := keychain.New(user)
	link, err := forged.Sign(statement.ActionAddDevice, op.Key, op.Key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.h.setRewrite(func(path string, body []byte) []byte {
		if path != "/v1/users/"+user+"/keys" {
			return body
		}
		b, _ := json.Marshal(api.UserKeys{UserID: user, Chain: []api.ChainLink{link},
			Keys: []api.RecipientKey{{Fingerprint: op.Fingerprint(), PublicKey: string(op.Key.Public().Armor())}}})
		return b
	})
	unlogged := e.client(party.Identity())
	if keys, err := unlogged.RecipientKeys(ctx, user); err != nil || keys[0].Fingerprint() != op.Fingerprint() {
		t.Fatalf("without the log the forged chain should pass: %v %v", keys, err)
	}
	_, err = party.RecipientKeys(ctx, user)
	if !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "second chain") {
		t.Fatalf("a second chain was not detected: %v", err)
	}
	t.Logf("party: %v", err)
}

// Attack (b): two checkpoints of the same size with different trees (a
// forged tree signed with the log key). The party trusted one; the
// other is transparency.ErrFork, naming both tree heads.
func TestLogForkDetectedByParty(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, _, party := e.setupLogged(ctx, "gina", &MemoryHistories{})
	if _, err := party.UserChain(ctx, user); err != nil {
		t.Fatal(err)
	}
	trusted := party.trust.Tree()
	other := trusted
	other.Hash = tlog.Hash(sha256.Sum256([]byte("another tree")))
	forged := signCheckpoint(t, e.h.srv.LogSigner, other)
	e.h.rewriteLog(t, func(tp *transparency.TreeProof) {
		tp.Checkpoint, tp.From, tp.Consistency = string(forged), 0, nil
	})
	_, err := party.UserChain(ctx, user)
	if !errors.Is(err, transparency.ErrFork) || !errors.Is(err, ErrLog) {
		t.Fatalf("a fork was not detected: %v", err)
	}
	if !strings.Contains(err.Error(), trusted.Hash.String()) || !strings.Contains(err.Error(), other.Hash.String()) {
		t.Errorf("the error does not name both tree heads: %v", err)
	}
	t.Logf("party: %v", err)
}

func signCheckpoint(t *testing.T, signer note.Signer, tree tlog.Tree) []byte {
	t.Helper()
	text := torchwood.Checkpoint{Origin: servertest.LogOrigin, Tree: tree}.String()
	b, err := note.Sign(&note.Note{Text: text}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Attack (c): the operator drops an approval from the log (deletes its
// row before it is sequenced, here by a trigger in the same transaction).
// The approval verifies, but the party's check after approval fails:
// ErrLog, "is not in the log".
func TestLogDroppedApprovalDetectedByParty(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, dev, party := e.setupLogged(ctx, "hank", &MemoryHistories{})
	party.logTimeout = time.Second
	if err := e.st.DB(ctx).Exec(fmt.Sprintf(`CREATE TRIGGER drop_approvals AFTER INSERT ON log_entries
		WHEN NEW.kind = '%s' BEGIN DELETE FROM log_entries WHERE "index" = NEW."index"; END`, store.LogApproval)).Error; err != nil {
		t.Fatal(err)
	}
	id := sealApproved(t, ctx, party, dev, user, "dropped", envelope.Modern)
	_, err := party.VerifyRecord(ctx, id, false, nil)
	if !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "is not in the log") {
		t.Fatalf("a dropped approval was not detected: %v", err)
	}
	t.Logf("party: %v", err)
}

// Attack (d): the log rolled back: after the party trusted a newer
// checkpoint, the server serves an older one. transparency.ErrRollback,
// naming both tree heads.
func TestLogRollbackDetectedByParty(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, dev, party := e.setupLogged(ctx, "iris", &MemoryHistories{})
	if _, err := party.UserChain(ctx, user); err != nil {
		t.Fatal(err)
	}
	e.h.mu.Lock()
	old := e.h.checkpoints[len(e.h.checkpoints)-1]
	e.h.mu.Unlock()
	oldTree := party.trust.Tree()
	id := sealApproved(t, ctx, party, dev, user, "grow the log", envelope.Modern)
	if _, err := party.VerifyRecord(ctx, id, false, nil); err != nil {
		t.Fatal(err)
	}
	if party.trust.Tree().N <= oldTree.N {
		t.Fatalf("the log did not grow: %d", party.trust.Tree().N)
	}
	e.h.rewriteLog(t, func(tp *transparency.TreeProof) {
		tp.Checkpoint, tp.From, tp.Consistency = string(old), 0, nil
	})
	_, err := party.UserChain(ctx, user)
	if !errors.Is(err, transparency.ErrRollback) || !errors.Is(err, ErrLog) {
		t.Fatalf("a rollback was not detected: %v", err)
	}
	t.Logf("party: %v", err)
}

// A decision in the user's name signed by a key not on the user's chain
// (the operator writes the leaf into the log directly): the device's next
// connect raises the alarm, naming the log index.
func TestLogForgedDecisionDetectedByDevice(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, dev, party := e.setupLogged(ctx, "jack", &MemoryHistories{})
	if _, err := dev.OwnChain(ctx); err != nil {
		t.Fatal(err)
	}
	up, err := party.SealAndUpload(ctx, user, strings.NewReader("forged"), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	op := identity(t, "operator-phone")
	a := &statement.Approval{Record: up.Record.ID, User: user, Device: op.Fingerprint(), Submitter: party.Identity().Fingerprint(),
		KeyPackets: sha256.Sum256([]byte("kp")), SessionKeyID: sha256.Sum256([]byte("sk")),
		Ciphertext: envelope.DataDigest{SHA256: sha256.Sum256([]byte("ct")), Size: 6}, MetadataSHA256: sha256.Sum256([]byte("md")),
		Request: "forged-request", Time: time.Now().UTC().Truncate(time.Second)}
	text, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := statement.Sign(text, op.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := transparency.SignedLeaf(text, sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.DB(ctx).Create(&store.LogEntry{Kind: store.LogApproval, Leaf: leaf, Time: time.Now()}).Error; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err = dev.OwnChain(ctx)
		if err != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "ALARM") || !strings.Contains(err.Error(), "log index") ||
		!strings.Contains(err.Error(), op.Fingerprint()) {
		t.Fatalf("a forged decision was not detected: %v", err)
	}
	t.Logf("device: %v", err)
}

// Without WithLog, nothing is checked: a client of the hostile proxy that
// drops every log answer works as before.
func TestNoLogNoCheck(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	e.h.setRewrite(func(path string, body []byte) []byte {
		if strings.HasPrefix(path, "/v1/log/") {
			return []byte("{}")
		}
		return body
	})
	user, dev, party := e.setup(ctx, "kate")
	id := sealApproved(t, ctx, party, dev, user, "no log", envelope.Modern)
	if _, err := party.VerifyRecord(ctx, id, false, nil); err != nil {
		t.Fatal(err)
	}
	if party.LogEnabled() {
		t.Fatal("log enabled without WithLog")
	}
}

func TestFileHistories(t *testing.T) {
	hs := FileHistories{Dir: filepath.Join(t.TempDir(), "log")}
	if s, err := hs.History("u1", transparency.Decisions); err != nil || s != (transparency.HistoryState{}) {
		t.Fatalf("empty: %v %v", s, err)
	}
	want := transparency.HistoryState{Count: 3, Value: sha256.Sum256([]byte("v"))}
	if err := hs.SetHistory("u1", transparency.Decisions, want); err != nil {
		t.Fatal(err)
	}
	if s, err := hs.History("u1", transparency.Decisions); err != nil || s != want {
		t.Fatalf("read back %v %v", s, err)
	}
	if s, _ := hs.History("u1", transparency.Chain); s != (transparency.HistoryState{}) {
		t.Fatalf("another history: %v", s)
	}
	if _, err := hs.History("../x", transparency.Decisions); err == nil {
		t.Fatal("a path in the user id was accepted")
	}
}

// The whole flow against a log cosigned by a real witness (litewitness),
// with clients that demand its cosignature (quorum 1): enroll, seal,
// approve, grant, open, every log check passing.
func TestLogWithWitness(t *testing.T) {
	var w *witnesstest.Witness
	srv := servertest.StartOptions(t, adminToken, servertest.Options{Quorum: 1,
		Witnesses: func(vkey string) []*translog.Witness {
			w = witnesstest.Start(t, "witness.test/w1", servertest.LogOrigin, vkey)
			tw, err := translog.ParseWitness(w.URL + "=" + w.VKey)
			if err != nil {
				t.Fatal(err)
			}
			return []*translog.Witness{tw}
		}})
	ctx := ctxT(t)
	admin, err := New(srv.URL, WithAdminToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	v, err := transparency.NewVerifier(servertest.LogOrigin, srv.LogVKey, []string{w.VKey}, 1)
	if err != nil {
		t.Fatal(err)
	}
	logged := func(id *Identity) *Client {
		trust, err := transparency.OpenTrust(filepath.Join(t.TempDir(), "checkpoint"), v)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(srv.URL, WithIdentity(id), WithLog(v, trust), WithPollInterval(10*time.Millisecond, 200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	u, err := admin.CreateUser(ctx, "mona")
	if err != nil {
		t.Fatal(err)
	}
	dev := logged(identity(t, "mona-device"))
	if _, err := dev.Enroll(ctx, u.Code, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.OwnChain(ctx); err != nil {
		t.Fatal(err)
	}
	pid := identity(t, "mona-party")
	if _, err := admin.CreateParty(ctx, "mona lab", pid.Key.Public().Armor()); err != nil {
		t.Fatal(err)
	}
	party := logged(pid)
	id := sealApproved(t, ctx, party, dev, u.ID, "witnessed", envelope.Modern)
	if _, err := party.RequestAccess(ctx, id, "read", 3600); err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	if _, err := party.WaitGrant(ctx, id); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, _, err := party.OpenRecordTo(ctx, id, &out, OpenOptions{}); err != nil || out.String() != "witnessed" {
		t.Fatalf("open: %q %v", out.String(), err)
	}
	if _, err := dev.OwnChain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w.Size(t, servertest.LogOrigin); n < party.trust.Tree().N {
		t.Fatalf("the witness cosigned size %d, the party trusts %d", n, party.trust.Tree().N)
	}

	// A reader that wants cosignatures younger than they are refuses the
	// checkpoint: the server could be holding it on an old view.
	trust, err := transparency.OpenTrust(filepath.Join(t.TempDir(), "checkpoint"), v)
	if err != nil {
		t.Fatal(err)
	}
	strict, err := New(srv.URL, WithIdentity(pid), WithLog(v, trust), WithLogMaxAge(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.UserChain(ctx, u.ID); !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "old view of the log") {
		t.Fatalf("a checkpoint cosigned longer ago than the client accepts: %v", err)
	}
}

// TestLogLongHistory: a history that grew by more than one answer's page
// (1000 entries) since the device's last check is read page by page
// (transparency.ErrMoreEntries) and verified whole.
func TestLogLongHistory(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, dev, _ := e.setupLogged(ctx, "olga", &MemoryHistories{})
	if _, err := dev.OwnChain(ctx); err != nil {
		t.Fatal(err)
	}
	rows := make([]store.LogEntry, 1001)
	for i := range rows {
		a := &statement.Approval{Record: fmt.Sprintf("%032x", i+1), User: user, Device: dev.Identity().Fingerprint(),
			Submitter: dev.Identity().Fingerprint(), KeyPackets: sha256.Sum256([]byte("kp")), SessionKeyID: sha256.Sum256([]byte{byte(i), byte(i >> 8)}),
			Ciphertext: envelope.DataDigest{SHA256: sha256.Sum256([]byte("ct")), Size: 1}, MetadataSHA256: sha256.Sum256([]byte("md")),
			Request: "r", Time: time.Now().UTC().Truncate(time.Second)}
		text, err := a.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sig, err := statement.Sign(text, dev.Identity().Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := transparency.SignedLeaf(text, sig)
		rows[i] = store.LogEntry{Kind: store.LogApproval, Leaf: leaf, Time: time.Now()}
	}
	if err := e.st.DB(ctx).CreateInBatches(rows, 200).Error; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := dev.OwnChain(ctx)
		if err != nil {
			t.Fatalf("1001 decisions signed by the device: %v", err)
		}
		st, _ := dev.histories.History(user, transparency.Decisions)
		if st.Count == 1001 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checked %d decisions", st.Count)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The server keeps serving a party the chain as it was before a new link
// (a revocation, here an added device): the party sees the log hold a
// link it was not served. A chain that was only stale once (a link added
// between the two requests) passes on the party's second look.
func TestLogHiddenLinkDetectedByParty(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, dev, party := e.setupLogged(ctx, "pia", &MemoryHistories{})
	old, err := party.UserKeys(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := party.UserChain(ctx, user); err != nil {
		t.Fatal(err)
	}
	e.addDevice(ctx, dev, user, "pia-phone-2")
	if ch, err := party.UserChain(ctx, user); err != nil || ch.Len() != 2 { // waits for the link in the log
		t.Fatalf("the new link: %v", err)
	}
	stale, _ := json.Marshal(old)
	var served int
	serveStale := func(times int) {
		served = 0
		e.h.setRewrite(func(path string, body []byte) []byte {
			if path != "/v1/users/"+user+"/keys" || served >= times {
				return body
			}
			served++
			return stale
		})
	}
	serveStale(1000)
	_, err = party.UserChain(ctx, user)
	if !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "which the server did not serve") {
		t.Fatalf("a hidden link was not detected: %v", err)
	}
	t.Logf("party: %v", err)
	serveStale(1)
	if ch, err := party.UserChain(ctx, user); err != nil || ch.Len() != 2 {
		t.Fatalf("after one stale answer: %v", err)
	}
}

// TestLogTeachesSessionKeys: a device learns the session key id of every
// approval of its user from the log, not only from the records the server
// lists; a second approved record with the same session key is an alarm.
func TestLogTeachesSessionKeys(t *testing.T) {
	e := newLogEnv(t)
	ctx := ctxT(t)
	user, dev, _ := e.setupLogged(ctx, "rita", &MemoryHistories{})
	if _, err := dev.OwnChain(ctx); err != nil {
		t.Fatal(err)
	}
	skid := sha256.Sum256([]byte("one session key"))
	approval := func(record string) store.LogEntry {
		a := &statement.Approval{Record: record, User: user, Device: dev.Identity().Fingerprint(),
			Submitter: dev.Identity().Fingerprint(), KeyPackets: sha256.Sum256([]byte("kp")), SessionKeyID: skid,
			Ciphertext: envelope.DataDigest{SHA256: sha256.Sum256([]byte("ct")), Size: 1}, MetadataSHA256: sha256.Sum256([]byte("md")),
			Request: "r", Time: time.Now().UTC().Truncate(time.Second)}
		text, err := a.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sig, err := statement.Sign(text, dev.Identity().Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := transparency.SignedLeaf(text, sig)
		if err != nil {
			t.Fatal(err)
		}
		return store.LogEntry{Kind: store.LogApproval, Leaf: leaf, Time: time.Now()}
	}
	waitChecked := func(count int64) error {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := dev.OwnChain(ctx)
			if err != nil {
				return err
			}
			if st, _ := dev.histories.History(user, transparency.Decisions); st.Count == count {
				return nil
			}
			if time.Now().After(deadline) {
				t.Fatalf("decisions not checked up to %d", count)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := approval(fmt.Sprintf("%032x", 1))
	if err := e.st.DB(ctx).Create(&first).Error; err != nil {
		t.Fatal(err)
	}
	if err := waitChecked(1); err != nil {
		t.Fatal(err)
	}
	if rec, err := dev.sessionKeys.Record(skid); err != nil || rec != fmt.Sprintf("%032x", 1) {
		t.Fatalf("the device did not learn the logged approval's session key: %q, %v", rec, err)
	}
	second := approval(fmt.Sprintf("%032x", 2))
	if err := e.st.DB(ctx).Create(&second).Error; err != nil {
		t.Fatal(err)
	}
	if err := waitChecked(2); !errors.Is(err, ErrSessionKeyReused) {
		t.Fatalf("a second record approved with the same session key: %v, want ErrSessionKeyReused", err)
	}
}
