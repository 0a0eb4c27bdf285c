package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/server/servertest"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/envelope"
)

const adminToken = "client-test-admin-token"

type testEnv struct {
	t     *testing.T
	ts    *httptest.Server
	st    *store.Store
	admin *Client
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	srv := servertest.Start(t, adminToken, nil)
	admin, err := New(srv.URL, WithAdminToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, ts: srv.Server, st: srv.Store, admin: admin}
}

var (
	idMu    sync.Mutex
	idCache = map[string]*Identity{}
)

// identity returns a fresh key (cached per name within the test binary:
// S2K is slow).
func identity(t *testing.T, name string) *Identity {
	t.Helper()
	idMu.Lock()
	defer idMu.Unlock()
	if id, ok := idCache[name]; ok {
		return id
	}
	id, _, err := GenerateIdentity(name, []byte("pass"), envelope.S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	idCache[name] = id
	return id
}

func (e *testEnv) client(id *Identity) *Client {
	c, err := New(e.ts.URL, WithIdentity(id))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *testEnv) setup(ctx context.Context, handle string) (user string, dev, party *Client) {
	t := e.t
	u, err := e.admin.CreateUser(ctx, handle)
	if err != nil {
		t.Fatal(err)
	}
	did := identity(t, handle+"-device")
	dev = e.client(did)
	if _, err := dev.Enroll(ctx, u.Code, "", ""); err != nil {
		t.Fatal(err)
	}
	pid := identity(t, handle+"-party")
	if _, err := e.admin.CreateParty(ctx, handle+" lab", pid.Key.Public().Armor()); err != nil {
		t.Fatal(err)
	}
	return u.ID, dev, e.client(pid)
}

func TestFullFlow(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user, dev, party := e.setup(ctx, "alice")

	events := dev.Subscribe(ctx, SubscribeOptions{})
	plain := make([]byte, 3<<20+17)
	rand.Read(plain)
	up, err := party.SealAndUpload(ctx, user, bytes.NewReader(plain), UploadOptions{
		ContentType: "application/pdf", Size: int64(len(plain)), Purpose: "lab results",
		Private: &PrivateMetadata{Title: "Blood test", Filename: "blood.pdf"}})
	if err != nil {
		t.Fatal(err)
	}
	if up.Record.State != "pending" {
		t.Fatalf("state %s", up.Record.State)
	}

	answer := func(kind string, fn func(*CheckedRequest)) {
		t.Helper()
		for ev := range events {
			d, err := dev.DeviceRequest(ctx, ev.RequestID)
			if err != nil {
				t.Fatal(err)
			}
			if d.State != "open" || d.Kind != kind {
				continue
			}
			cr, err := dev.Check(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			fn(cr)
			return
		}
		t.Fatal("event stream ended")
	}
	answer(KindApproval, func(cr *CheckedRequest) {
		if cr.Private == nil || cr.Private.Title != "Blood test" || cr.Metadata.Purpose != "lab results" {
			t.Errorf("request shows %+v %+v", cr.Private, cr.Metadata)
		}
		if _, err := dev.ApproveRequest(ctx, cr); err != nil {
			t.Fatal(err)
		}
		// A second answer is a conflict.
		if _, err := dev.ApproveRequest(ctx, cr); !IsConflict(err) {
			t.Errorf("second approve: %v", err)
		}
	})
	rec, err := party.WaitDecided(ctx, up.Record.ID)
	if err != nil || rec.State != "approved" {
		t.Fatalf("wait: %v %v", rec, err)
	}
	if _, err := party.VerifyRecord(ctx, rec.ID, false, up.Recipients); err != nil {
		t.Fatal(err)
	}
	// Not granted yet.
	if _, err := party.RecordGrant(ctx, rec.ID); !IsNotFound(err) {
		t.Fatalf("grant before request: %v", err)
	}
	if _, err := party.RequestAccess(ctx, rec.ID, "second opinion", 3600); err != nil {
		t.Fatal(err)
	}
	answer(KindAccess, func(cr *CheckedRequest) {
		if cr.Detail.Purpose != "second opinion" {
			t.Errorf("purpose %q", cr.Detail.Purpose)
		}
		if _, err := dev.GrantRequest(ctx, cr, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := party.WaitGrant(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.bin")
	v, n, err := party.OpenRecord(ctx, rec.ID, out, OpenOptions{Trusted: up.Recipients})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if n != int64(len(plain)) || !bytes.Equal(got, plain) || v.Grant == nil {
		t.Fatalf("opened %d bytes, equal=%v", n, bytes.Equal(got, plain))
	}
	// Range download.
	body, total, err := party.Content(ctx, rec.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(body)
	body.Close()
	if int64(len(rest))+10 != total {
		t.Fatalf("range: %d + 10 != %d", len(rest), total)
	}
	// Revoke: the content is no longer served.
	grants, err := dev.DeviceGrants(ctx)
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants %v %v", grants, err)
	}
	if _, err := dev.RevokeGrant(ctx, grants[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := party.Fetch(ctx, rec.ID, io.Discard); !IsNotFound(err) {
		t.Fatalf("fetch after revoke: %v", err)
	}
}

func TestTamperedDownloadIsRefused(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user, dev, party := e.setup(ctx, "bob")
	up, err := party.SealAndUpload(ctx, user, bytes.NewReader([]byte("hello")), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	if _, err := party.WaitDecided(ctx, up.Record.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := party.RequestAccess(ctx, up.Record.ID, "check", 0); err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	v, err := party.VerifyRecord(ctx, up.Record.ID, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	if _, err := party.Fetch(ctx, up.Record.ID, &msg); err != nil {
		t.Fatal(err)
	}
	// A different approved digest: the stream must fail at the end.
	v.Approval.Ciphertext.SHA256[0] ^= 1
	r, err := OpenVerified(bytes.NewReader(msg.Bytes()), v, party.Identity().Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("a wrong ciphertext digest was accepted")
	}
}

// approveAll answers every open request: approve, or grant.
func approveAll(t *testing.T, ctx context.Context, dev *Client) {
	t.Helper()
	reqs, err := dev.DeviceRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range reqs {
		d, err := dev.DeviceRequest(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := dev.Check(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if d.Kind == KindApproval {
			_, err = dev.ApproveRequest(ctx, cr)
		} else {
			_, err = dev.GrantRequest(ctx, cr, time.Time{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestProblemErrorAndTokenRefresh(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	_, dev, party := e.setup(ctx, "carol")
	_, err := party.Record(ctx, "0123456789abcdef0123456789abcdef")
	var pe *Error
	if !asError(err, &pe) || pe.Status != 404 || pe.Type == "" || pe.Title == "" {
		t.Fatalf("want a 404 problem, got %#v", err)
	}
	// A token the server does not know is replaced transparently.
	dev.mu.Lock()
	dev.token, dev.expires = "bogus-token", time.Now().Add(time.Hour)
	dev.mu.Unlock()
	if _, err := dev.DeviceRequests(ctx); err != nil {
		t.Fatal(err)
	}
	// Admin routes refuse a wrong admin token with a problem.
	bad, _ := New(e.ts.URL, WithAdminToken("wrong"))
	if _, err := bad.ListUsers(ctx); StatusOf(err) != 401 {
		t.Fatalf("wrong admin token: %v", err)
	}
	// Enrolling with a used code is refused.
	if _, err := dev.Enroll(ctx, "nope", "", ""); StatusOf(err) != 403 {
		t.Fatalf("bad code: %v", err)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	id, armored, err := GenerateIdentity("x", []byte("secret"), envelope.S2KArgon2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseIdentity(armored, []byte("wrong")); err == nil {
		t.Fatal("wrong passphrase accepted")
	}
	if _, err := ParseIdentity(armored, nil); err == nil {
		t.Fatal("missing passphrase accepted")
	}
	id2, err := ParseIdentity(armored, []byte("secret"))
	if err != nil || id2.Fingerprint() != id.Fingerprint() {
		t.Fatal(err)
	}
	plain, err := id.MarshalUnprotected()
	if err != nil {
		t.Fatal(err)
	}
	id3, err := ParseIdentity(plain, nil)
	if err != nil || id3.Fingerprint() != id.Fingerprint() {
		t.Fatal(err)
	}
}
