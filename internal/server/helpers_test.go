package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

const testAdminToken = "test-admin-token-0123456789"

type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// pushCall is one captured Notify.
type pushCall struct {
	Target    push.Target
	RequestID string
}

type recorder struct {
	mu    sync.Mutex
	calls []pushCall
	next  push.Notifier
}

func (r *recorder) Notify(ctx context.Context, t push.Target, id string) error {
	r.mu.Lock()
	r.calls = append(r.calls, pushCall{t, id})
	r.mu.Unlock()
	if r.next != nil {
		return r.next.Notify(ctx, t, id)
	}
	return nil
}

// Disconnect passes on to the wrapped notifier, like push.Multi does.
func (r *recorder) Disconnect(ctx context.Context, deviceID string) error {
	if d, ok := r.next.(push.Disconnecter); ok {
		return d.Disconnect(ctx, deviceID)
	}
	return nil
}

func (r *recorder) all() []pushCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pushCall(nil), r.calls...)
}

type env struct {
	t      testing.TB
	srv    *Server
	ts     *httptest.Server
	st     *store.Store
	blobs  *blob.FS
	clock  *clock
	pushes *recorder
	hub    *push.Local
	// channel is the replicas' NOTIFY channel (replicas), else empty.
	channel string
}

func newEnv(t testing.TB, b storetest.Backend, mod func(*Config)) *env {
	t.Helper()
	return newEnvIn(t, b, t.TempDir(), mod)
}

// newEnvIn is newEnv with the blob store in blobDir.
func newEnvIn(t testing.TB, b storetest.Backend, blobDir string, mod func(*Config)) *env {
	t.Helper()
	clk := &clock{}
	return newEnvFrom(t, storetest.Open(t, b, clk.now), clk, blobDir, nil, mod)
}

// newEnvFrom builds a server on st (whose clock is clk) with its blobs in
// blobDir. local makes the local push channel from the server's hub (nil:
// the hub itself); the env's recorder captures every push on its way there.
func newEnvFrom(t testing.TB, st *store.Store, clk *clock, blobDir string, local func(*push.Local) push.Notifier, mod func(*Config)) *env {
	t.Helper()
	return newEnvWrapped(t, st, clk, blobDir, local, nil, mod)
}

// newEnvWrapped is newEnvFrom with the server's blob store wrapped by
// wrap (fault injection); the env's blobs stay the store underneath.
func newEnvWrapped(t testing.TB, st *store.Store, clk *clock, blobDir string, local func(*push.Local) push.Notifier,
	wrap func(*blob.FS) blob.Store, mod func(*Config)) *env {
	t.Helper()
	blobs, err := blob.NewFS(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	var served blob.Store = blobs
	if wrap != nil {
		served = wrap(blobs)
	}
	hub := push.NewLocal(push.LocalOptions{})
	rec := &recorder{next: hub}
	if local != nil {
		rec.next = local(hub)
	}
	cfg := DefaultConfig()
	cfg.AdminToken = testAdminToken
	cfg.MaxRecordSize = 8 << 20
	cfg.UploadRate, cfg.AccessRate, cfg.AuthRate = 0, 0, 0
	cfg.Logger = discardLogger()
	if mod != nil {
		mod(&cfg)
	}
	srv := New(cfg, st, served, rec, hub, WakeThrough(rec.next.(push.BatchNotifier)))
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hub.Close()
		ts.Close()
	})
	return &env{t: t, srv: srv, ts: ts, st: st, blobs: blobs, clock: clk, pushes: rec, hub: hub}
}

// do sends a request; body is marshalled as JSON unless it is []byte or a string.
func (e *env) do(method, path, token string, body any, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// call sends a JSON request, checks the status and decodes the answer.
func (e *env) call(method, path, token string, body any, want int, out any) []byte {
	e.t.Helper()
	resp, data := e.do(method, path, token, body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
	return data
}

// wantProblem checks a problem response.
func (e *env) wantProblem(resp *http.Response, data []byte, status int) api.Problem {
	e.t.Helper()
	if resp.StatusCode != status {
		e.t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != api.ContentTypeProblemJSON {
		e.t.Fatalf("content type %q, want problem+json (body %s)", ct, data)
	}
	var p api.Problem
	if err := json.Unmarshal(data, &p); err != nil || p.Status != status || p.Type == "" || p.Title == "" {
		e.t.Fatalf("bad problem body %s (%v)", data, err)
	}
	// Every problem type goes with exactly one status.
	if want := api.ProblemStatus(p.Type); want != status {
		e.t.Fatalf("problem type %s sent with status %d (the type means %d)", p.Type, status, want)
	}
	return p
}

type snapshot struct {
	rows         map[string]int64
	blobs, temps int
}

// ciphertexts counts the stored ciphertexts: blob files, and those the
// database keeps.
func (e *env) ciphertexts() (blobs, inline int) {
	e.t.Helper()
	b, _, err := e.blobs.Count()
	if err != nil {
		e.t.Fatal(err)
	}
	var n int64
	if err := e.st.DB(e.t.Context()).Model(&store.InlineCiphertext{}).Count(&n).Error; err != nil {
		e.t.Fatal(err)
	}
	return b, int(n)
}

func (e *env) snap() snapshot {
	e.t.Helper()
	rows, err := e.st.Counts(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	// Tokens and nonces are auth plumbing; tests create them on purpose.
	delete(rows, "tokens")
	delete(rows, "nonces")
	b, tm, err := e.blobs.Count()
	if err != nil {
		e.t.Fatal(err)
	}
	return snapshot{rows, b, tm}
}

// unchanged fails if anything differs from before.
func (e *env) unchanged(before snapshot) {
	e.t.Helper()
	after := e.snap()
	for k, v := range before.rows {
		if after.rows[k] != v {
			e.t.Errorf("table %s: %d rows, was %d", k, after.rows[k], v)
		}
	}
	if after.blobs != before.blobs || after.temps != before.temps {
		e.t.Errorf("blob dir: %d blobs and %d temp files, was %d and %d", after.blobs, after.temps, before.blobs, before.temps)
	}
}

// login runs the challenge/token exchange for key.
func (e *env) login(key *envelope.Key) string {
	e.t.Helper()
	var ch api.ChallengeResponse
	e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: key.Fingerprint()}, 200, &ch)
	sig := signChallenge(e.t, key, ch.Nonce, key.Fingerprint())
	var tok api.TokenResponse
	e.call("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: key.Fingerprint(), Nonce: ch.Nonce, Signature: string(sig)}, 200, &tok)
	return tok.Token
}

type device struct {
	key   *envelope.Key
	id    string
	user  string
	token string
}

type party struct {
	key   *envelope.Key
	id    string
	name  string
	token string
}

func (e *env) createUser(handle string) (string, string) {
	e.t.Helper()
	var u api.CreateUserResponse
	e.call("POST", api.PathAdminUsers, testAdminToken, api.CreateUserRequest{Handle: handle}, 201, &u)
	return u.ID, u.Code
}

// enroll enrolls a new key as the first device of the code's user, as a
// phone does: it asks whom the code is for, and signs the first link of
// the user's key chain with the new key.
func (e *env) enroll(code string) *device {
	e.t.Helper()
	k := genKey(e.t, "device")
	var r api.EnrollResponse
	e.call("POST", api.PathEnroll, "", e.enrollRequest(code, k), 201, &r)
	return &device{key: k, id: r.DeviceID, user: r.UserID, token: e.login(k)}
}

// enrollRequest is a genuine enrollment of k with code.
func (e *env) enrollRequest(code string, k *envelope.Key) api.EnrollRequest {
	e.t.Helper()
	var info api.EnrollInfo
	e.call("POST", api.PathEnrollInfo, "", api.EnrollInfoRequest{Code: code}, 200, &info)
	link, err := keychain.New(info.UserID).Sign(statement.ActionAddDevice, k, k, e.clock.now())
	if err != nil {
		e.t.Fatal(err)
	}
	return api.EnrollRequest{Code: code, PublicKey: string(k.Public().Armor()), Link: link}
}

// firstLinkRequest is an enrollment of k with code for user, without
// asking the server whom the code is for.
func firstLinkRequest(t testing.TB, code, user string, k *envelope.Key, now time.Time) api.EnrollRequest {
	t.Helper()
	link, err := keychain.New(user).Sign(statement.ActionAddDevice, k, k, now)
	if err != nil {
		t.Fatal(err)
	}
	return api.EnrollRequest{Code: code, PublicKey: string(k.Public().Armor()), Link: link}
}

// chainOf fetches and verifies the key chain of d's user, as d sees it.
func (e *env) chainOf(d *device) *keychain.State {
	e.t.Helper()
	var uk api.UserKeys
	e.call("GET", api.PathDeviceChain, d.token, nil, 200, &uk)
	st, err := keychain.Verify(d.user, uk.Chain)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// link is the link by which signer extends d's chain with action on target.
func (e *env) link(d *device, action string, target, signer *envelope.Key) api.ChainLink {
	e.t.Helper()
	l, err := e.chainOf(d).Sign(action, target, signer, e.clock.now())
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// extend sends the link by which d extends its chain with action on target.
func (e *env) extend(d *device, action string, target *envelope.Key) api.UserKeys {
	e.t.Helper()
	var uk api.UserKeys
	e.call("POST", api.PathDeviceChain, d.token, e.link(d, action, target, d.key), 200, &uk)
	return uk
}

// requestLink asks, as a new device with key k, to be added to user.
func (e *env) requestLink(user string, k *envelope.Key) api.LinkRequest {
	e.t.Helper()
	var lr api.LinkRequest
	e.call("POST", api.PathLinkRequests, "", api.LinkRequestCreate{User: user, PublicKey: string(k.Public().Armor())}, 201, &lr)
	return lr
}

// addDevice adds a new device to by's user, as the user does: the new
// device asks, by sees the request, and signs the add-device link after
// comparing the codes.
func (e *env) addDevice(by *device) *device {
	e.t.Helper()
	k := genKey(e.t, "another device")
	lr := e.requestLink(by.user, k)
	det := e.deviceRequest(by, lr.ID)
	nk, err := envelope.ParseKey([]byte(det.NewDeviceKey))
	if err != nil || nk.Fingerprint() != k.Fingerprint() || keychain.Code(nk) != lr.Code {
		e.t.Fatalf("device request shows another key or code (%v)", err)
	}
	e.call("POST", api.Path(api.PathDeviceLink, lr.ID), by.token, e.linkAnswer(by, nk, by.key), 200, nil)
	e.call("GET", api.Path(api.PathLinkRequest, lr.ID), "", nil, 200, &lr)
	if lr.State != store.LinkApproved || lr.DeviceID == "" {
		e.t.Fatalf("link request after approval: %+v", lr)
	}
	return &device{key: k, id: lr.DeviceID, user: by.user, token: e.login(k)}
}

// linkAnswer is the answer to a device request: the add-device link of
// key on d's chain, signed by signer.
func (e *env) linkAnswer(d *device, key, signer *envelope.Key) api.AnswerRequest {
	e.t.Helper()
	l := e.link(d, statement.ActionAddDevice, key, signer)
	return api.AnswerRequest{Statement: l.Statement, Signature: l.Signature}
}

// deviceRequest finds request id in d's list and fetches it.
func (e *env) deviceRequest(d *device, id string) api.RequestDetail {
	e.t.Helper()
	var list api.RequestList
	e.call("GET", api.PathDeviceRequests, d.token, nil, 200, &list)
	for _, q := range list.Requests {
		if q.ID == id {
			var det api.RequestDetail
			e.call("GET", api.Path(api.PathDeviceRequest, q.ID), d.token, nil, 200, &det)
			return det
		}
	}
	e.t.Fatalf("request %s is not in the device's list", id)
	return api.RequestDetail{}
}

func (e *env) newUser(handle string) *device {
	e.t.Helper()
	_, code := e.createUser(handle)
	return e.enroll(code)
}

func (e *env) newParty(name string) *party {
	e.t.Helper()
	k := genKey(e.t, name)
	var p api.Party
	e.call("POST", api.PathAdminParties, testAdminToken, api.CreatePartyRequest{Name: name, PublicKey: string(k.Public().Armor())}, 201, &p)
	return &party{key: k, id: p.ID, name: name, token: e.login(k)}
}

// recipientKeys fetches the user's keys as a party.
func (e *env) recipientKeys(p *party, userID string) []*envelope.Key {
	e.t.Helper()
	var uk api.UserKeys
	e.call("GET", api.Path(api.PathUserKeys, userID), p.token, nil, 200, &uk)
	var out []*envelope.Key
	for _, k := range uk.Keys {
		key, err := envelope.ParseKey([]byte(k.PublicKey))
		if err != nil {
			e.t.Fatal(err)
		}
		if key.Fingerprint() != k.Fingerprint {
			e.t.Fatal("fingerprint mismatch")
		}
		out = append(out, key)
	}
	return out
}

func sealMsg(t testing.TB, profile envelope.Profile, plaintext []byte, to ...*envelope.Key) ([]byte, envelope.DataDigest) {
	t.Helper()
	var buf bytes.Buffer
	w, err := envelope.Seal(&buf, profile, to...)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plaintext)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.Digest()
}

// upload is one prepared upload.
type upload struct {
	meta, private, body, stmt, sig []byte
	digest                         envelope.DataDigest
	// keyPackets, when set, is the key-packets-sha256 sign puts in the
	// submission (else that of body's key packets).
	keyPackets *[32]byte
	idem       string
	// parts overrides the part order (names) when set.
	parts []string
	// headers adds header fields to the named parts.
	headers map[string]textproto.MIMEHeader
}

// prepare seals plaintext to the user's keys and signs a submission.
func (e *env) prepare(p *party, userID string, plaintext []byte, profile envelope.Profile) *upload {
	e.t.Helper()
	keys := e.recipientKeys(p, userID)
	var buf bytes.Buffer
	w, err := envelope.Seal(&buf, profile, keys...)
	if err != nil {
		e.t.Fatal(err)
	}
	w.Write(plaintext)
	if err := w.Close(); err != nil {
		e.t.Fatal(err)
	}
	private, _ := sealMsg(e.t, profile, []byte(`{"title":"Blood test results","filename":"results.pdf"}`), keys...)
	meta := []byte(fmt.Sprintf(`{"content_type":"application/pdf","size":%d,"purpose":"lab results"}`, len(plaintext)))
	u := &upload{meta: meta, private: private, body: buf.Bytes(), digest: w.Digest()}
	if kp := keyPacketsOf(buf.Bytes()); kp != w.KeyPackets() {
		e.t.Fatal("the sealer's key packets digest is not that of the message's key packets")
	}
	e.sign(p, userID, u)
	return u
}

// keyPacketsOf is the key-packets-sha256 of a message (for a body that is
// not one, the SHA-256 of the whole body: a submission needs some digest).
func keyPacketsOf(body []byte) [32]byte {
	m, err := envelope.Split(bytes.NewReader(body))
	if err != nil || len(m.KeyPackets) == 0 {
		return sha256.Sum256(body)
	}
	return envelope.KeyPacketsDigest(m.KeyPackets)
}

func (e *env) sign(p *party, userID string, u *upload) {
	e.t.Helper()
	kp := keyPacketsOf(u.body)
	if u.keyPackets != nil {
		kp = *u.keyPackets
	}
	sub := statement.Submission{User: userID, Submitter: p.key.Fingerprint(), KeyPackets: kp, Ciphertext: u.digest,
		MetadataSHA256: statement.MetadataDigest(u.meta, u.private)}
	stmt, err := sub.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	sig, err := statement.Sign(stmt, p.key)
	if err != nil {
		e.t.Fatal(err)
	}
	u.stmt, u.sig = stmt, sig
}

func (u *upload) multipart() (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	parts := u.parts
	if parts == nil {
		parts = []string{api.PartMetadata, api.PartPrivate, api.PartBody, api.PartStatement, api.PartSignature}
	}
	for _, name := range parts {
		var data []byte
		switch name {
		case api.PartMetadata:
			data = u.meta
		case api.PartPrivate:
			if u.private == nil {
				continue
			}
			data = u.private
		case api.PartBody:
			data = u.body
		case api.PartStatement:
			data = u.stmt
		case api.PartSignature:
			data = u.sig
		default:
			data = []byte("x")
		}
		h := textproto.MIMEHeader{"Content-Disposition": {`form-data; name="` + name + `"`}}
		for k, v := range u.headers[name] {
			h[k] = v
		}
		w, _ := mw.CreatePart(h)
		w.Write(data)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

func (e *env) send(p *party, userID string, u *upload) (*http.Response, []byte) {
	e.t.Helper()
	ct, body := u.multipart()
	hdr := []string{"Content-Type", ct}
	if u.idem != "" {
		hdr = append(hdr, api.HeaderIdempotencyKey, u.idem)
	}
	req, _ := http.NewRequest("POST", e.ts.URL+api.Path(api.PathUserRecords, userID), bytes.NewReader(body))
	for i := 0; i < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

func (e *env) submit(p *party, userID string, plaintext []byte) (api.Record, *upload) {
	e.t.Helper()
	u := e.prepare(p, userID, plaintext, envelope.Compat)
	resp, data := e.send(p, userID, u)
	if resp.StatusCode != 201 {
		e.t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	var r api.Record
	json.Unmarshal(data, &r)
	return r, u
}

// openRequest returns the device's single open request of kind for record.
func (e *env) findRequest(d *device, kind, recordID string) api.RequestDetail {
	e.t.Helper()
	var list api.RequestList
	e.call("GET", api.PathDeviceRequests, d.token, nil, 200, &list)
	for _, q := range list.Requests {
		if q.Kind == kind && q.RecordID == recordID {
			var det api.RequestDetail
			e.call("GET", api.Path(api.PathDeviceRequest, q.ID), d.token, nil, 200, &det)
			return det
		}
	}
	e.t.Fatalf("no open %s request for record %s", kind, recordID)
	return api.RequestDetail{}
}

// approvalFor is d's approval of the request as served: the key packets
// digest of the served packets, the session key id of d's own packet.
func approvalFor(det api.RequestDetail, d *device, t time.Time) *statement.Approval {
	var sha [32]byte
	hex.Decode(sha[:], []byte(det.CiphertextSHA256))
	meta := statement.MetadataDigest([]byte(det.Metadata), det.Private)
	a := &statement.Approval{Record: det.RecordID, User: det.UserID, Device: d.key.Fingerprint(), Submitter: det.SubmitterFingerprint,
		KeyPackets: servedKeyPackets(det), Ciphertext: envelope.DataDigest{SHA256: sha, Size: det.CiphertextSize}, MetadataSHA256: meta,
		Request: det.ID, Time: t.UTC().Truncate(time.Second)}
	a.SessionKeyID = sha256.Sum256([]byte("no key packet")) // a device rejects what it cannot open
	if kp, err := envelope.ParseKeyPacket(det.KeyPacket); err == nil {
		if id, err := envelope.SessionKeyID(kp, envelope.Profile(det.Profile), d.key); err == nil {
			a.SessionKeyID = id
		}
	}
	return a
}

// servedKeyPackets is KeyPacketsDigest of the key packets the server
// served in a request detail.
func servedKeyPackets(det api.RequestDetail) [32]byte {
	var kps []*envelope.KeyPacket
	for _, raw := range det.KeyPackets {
		kp, err := envelope.ParseKeyPacket(raw)
		if err != nil {
			return sha256.Sum256(raw)
		}
		kps = append(kps, kp)
	}
	return envelope.KeyPacketsDigest(kps)
}

// rejectionFor is d's rejection of the request as served.
func rejectionFor(det api.RequestDetail, d *device, t time.Time) *statement.Rejection {
	a := approvalFor(det, d, t)
	return &statement.Rejection{Record: a.Record, User: a.User, Device: a.Device, Submitter: a.Submitter, KeyPackets: a.KeyPackets,
		Ciphertext: a.Ciphertext, MetadataSHA256: a.MetadataSHA256, Request: a.Request, Reason: statement.ReasonDeclined, Time: a.Time}
}

func signStmt(t testing.TB, m interface{ Marshal() ([]byte, error) }, k *envelope.Key) api.AnswerRequest {
	t.Helper()
	stmt, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := statement.Sign(stmt, k)
	if err != nil {
		t.Fatal(err)
	}
	return api.AnswerRequest{Statement: string(stmt), Signature: string(sig)}
}

// approve approves the record's open approval request as d.
func (e *env) approve(d *device, recordID string) api.RequestDetail {
	e.t.Helper()
	det := e.findRequest(d, store.KindApproval, recordID)
	e.call("POST", api.Path(api.PathDeviceApprove, det.ID), d.token, signStmt(e.t, approvalFor(det, d, e.clock.now()), d.key), 200, nil)
	return det
}

// grantAccess asks for access as p and grants it as d; returns the grant statement's request.
func (e *env) grantAccess(d *device, p *party, recordID string, expiresIn int64) api.RequestDetail {
	e.t.Helper()
	var ar api.AccessResponse
	e.call("POST", api.Path(api.PathRecordAccess, recordID), p.token, api.AccessRequest{Purpose: "mortgage check", ExpiresIn: expiresIn}, 202, &ar)
	det := e.findRequest(d, store.KindAccess, recordID)
	body := grantBody(e.t, det, d, p.key.Public(), e.clock.now())
	e.call("POST", api.Path(api.PathDeviceGrant, det.ID), d.token, body, 200, nil)
	return det
}

func grantBody(t testing.TB, det api.RequestDetail, d *device, to *envelope.Key, now time.Time) api.GrantAnswer {
	t.Helper()
	kp, err := envelope.ParseKeyPacket(det.KeyPacket)
	if err != nil {
		t.Fatal(err)
	}
	pkesk, err := envelope.Rewrap(kp, envelope.Profile(det.Profile), d.key, to)
	if err != nil {
		t.Fatal(err)
	}
	g := &statement.Grant{Record: det.RecordID, Grantee: det.RequesterFingerprint, KeyPacketSHA256: sha256.Sum256(pkesk),
		PurposeSHA256: statement.PurposeDigest(det.Purpose), Expires: det.GrantExpires.UTC(), Request: det.ID,
		Time: now.UTC().Truncate(time.Second)}
	a := signStmt(t, g, d.key)
	return api.GrantAnswer{KeyPacket: pkesk, Statement: a.Statement, Signature: a.Signature}
}

// race POSTs bodies[i] with tokens[i] to path, all at once, and counts the
// statuses.
func (e *env) race(path string, bodies []any, tokens []string) map[int]int {
	e.t.Helper()
	var wg sync.WaitGroup
	codes := make(chan int, len(bodies))
	for i := range bodies {
		j, err := json.Marshal(bodies[i])
		if err != nil {
			e.t.Fatal(err)
		}
		wg.Add(1)
		go func(body []byte, token string) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", e.ts.URL+path, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				e.t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}(j, tokens[i])
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	return count
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
