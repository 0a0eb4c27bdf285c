package server

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

func sqlite() storetest.Backend { return storetest.Backends()[0] }

// Each attack gets a 4xx problem and changes nothing (rows and blobs).

func TestAttackApprovals(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rec1, _ := e.submit(lab, dev.user, []byte("record one"))
	rec2, _ := e.submit(lab, dev.user, []byte("record two"))
	det1 := e.findRequest(dev, store.KindApproval, rec1.ID)
	det2 := e.findRequest(dev, store.KindApproval, rec2.ID)
	now := e.clock.now()

	cases := []struct {
		name   string
		path   string
		body   any
		status int
	}{
		{"signed by the party key", api.Path(api.PathDeviceApprove, det1.ID), signStmt(t, approvalFor(det1, dev, now), lab.key), 422},
		{"statement for another record", api.Path(api.PathDeviceApprove, det1.ID), signStmt(t, approvalFor(det2, dev, now), dev.key), 422},
		{"wrong device fingerprint", api.Path(api.PathDeviceApprove, det1.ID), func() any {
			a := approvalFor(det1, dev, now)
			a.Device = lab.key.Fingerprint()
			return signStmt(t, a, dev.key)
		}(), 422},
		{"stale time", api.Path(api.PathDeviceApprove, det1.ID), signStmt(t, approvalFor(det1, dev, now.Add(-2*time.Hour)), dev.key), 422},
		{"rejection sent as approval", api.Path(api.PathDeviceApprove, det1.ID), signStmt(t, rejectionFor(det1, dev, now), dev.key), 422},
		{"approval sent as rejection", api.Path(api.PathDeviceReject, det1.ID), signStmt(t, approvalFor(det1, dev, now), dev.key), 422},
		{"signature of another statement", api.Path(api.PathDeviceApprove, det1.ID), api.AnswerRequest{
			Statement: signStmt(t, approvalFor(det1, dev, now), dev.key).Statement,
			Signature: signStmt(t, approvalFor(det2, dev, now), dev.key).Signature}, 422},
		{"grant to an approval request", api.Path(api.PathDeviceGrant, det1.ID), api.GrantAnswer{KeyPacket: det1.KeyPacket, Statement: "x", Signature: "y"}, 409},
		{"unknown field", api.Path(api.PathDeviceApprove, det1.ID), `{"statement":"a","signature":"b","extra":1}`, 400},
		{"trailing data", api.Path(api.PathDeviceApprove, det1.ID), `{"statement":"a","signature":"b"} {}`, 400},
		{"invalid JSON", api.Path(api.PathDeviceApprove, det1.ID), `{"statement":`, 400},
		{"path traversal id", "/v1/device/requests/..%2F..%2Fetc%2Fpasswd/approve", signStmt(t, approvalFor(det1, dev, now), dev.key), 404},
		{"SQL id", "/v1/device/requests/%27%20OR%201%3D1--/approve", signStmt(t, approvalFor(det1, dev, now), dev.key), 404},
		{"party token on device route", api.Path(api.PathDeviceApprove, det1.ID), signStmt(t, approvalFor(det1, dev, now), dev.key), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snap()
			tok := dev.token
			if c.status == 401 {
				tok = lab.token
			}
			resp, data := e.do("POST", c.path, tok, c.body)
			e.wantProblem(resp, data, c.status)
			e.unchanged(before)
			if strings.Contains(string(data), "BEGIN PGP") {
				t.Fatal("problem echoes a signature")
			}
		})
	}
	// The genuine approval works once; a second one is a conflict.
	good := signStmt(t, approvalFor(det1, dev, now), dev.key)
	e.call("POST", api.Path(api.PathDeviceApprove, det1.ID), dev.token, good, 200, nil)
	before := e.snap()
	resp, data := e.do("POST", api.Path(api.PathDeviceApprove, det1.ID), dev.token, good)
	e.wantProblem(resp, data, 409)
	rej := signStmt(t, rejectionFor(det1, dev, now), dev.key)
	resp, data = e.do("POST", api.Path(api.PathDeviceReject, det1.ID), dev.token, rej)
	e.wantProblem(resp, data, 409)
	e.unchanged(before)

	// A device of another user cannot see or answer the request.
	other := e.newUser("mallory")
	resp, data = e.do("GET", api.Path(api.PathDeviceRequest, det2.ID), other.token, nil)
	e.wantProblem(resp, data, 404)
}

// TestRejectDeletesCiphertext: a rejected record's ciphertext goes,
// whether the database kept it (a small record) or the blob store.
func TestRejectDeletesCiphertext(t *testing.T) {
	for _, c := range []struct {
		name      string
		inlineMax int64
	}{{"inline", 0}, {"blob", -1}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, sqlite(), func(cfg *Config) { cfg.InlineMax = c.inlineMax })
			dev := e.newUser("alice")
			lab := e.newParty("lab")
			rec, _ := e.submit(lab, dev.user, []byte("unwanted"))
			det := e.findRequest(dev, store.KindApproval, rec.ID)
			if blobs, inline := e.ciphertexts(); blobs+inline != 1 || (inline == 1) != (c.inlineMax == 0) {
				t.Fatalf("%d blobs, %d kept in the database", blobs, inline)
			}
			e.call("POST", api.Path(api.PathDeviceReject, det.ID), dev.token, signStmt(t, rejectionFor(det, dev, e.clock.now()), dev.key), 200, nil)
			var r api.Record
			e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, &r)
			if r.State != api.RecordRejected || r.DecisionStatement == "" {
				t.Fatalf("after rejection: %+v", r)
			}
			if _, err := statement.ParseRejection([]byte(r.DecisionStatement)); err != nil {
				t.Fatal(err)
			}
			if b, tm, _ := e.blobs.Count(); b != 0 || tm != 0 {
				t.Fatalf("ciphertext kept after rejection: %d blobs, %d temps", b, tm)
			}
			if _, inline := e.ciphertexts(); inline != 0 {
				t.Fatal("ciphertext kept in the database after rejection")
			}
			var kps int64
			e.st.DB(t.Context()).Model(&store.RecordKeyPacket{}).Count(&kps)
			if kps != 0 {
				t.Fatal("key packets kept after rejection")
			}
			// No access to a rejected record.
			resp, data := e.do("POST", api.Path(api.PathRecordAccess, rec.ID), lab.token, api.AccessRequest{Purpose: "x"})
			e.wantProblem(resp, data, 409)
		})
	}
}

// TestConcurrentApprovals: of 20 approvals of one record at once, one is
// applied; then approvals and rejections race on another.
func TestConcurrentApprovals(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			dev := e.newUser("alice")
			lab := e.newParty("lab")
			rec, _ := e.submit(lab, dev.user, []byte("race"))
			det := e.findRequest(dev, store.KindApproval, rec.ID)
			oneWins(t, e, dev, api.Path(api.PathDeviceApprove, det.ID), func() any {
				return signStmt(t, approvalFor(det, dev, e.clock.now()), dev.key)
			})
			var logs, audits int64
			e.st.DB(t.Context()).Model(&store.LogEntry{}).Where("kind = ?", store.LogApproval).Count(&logs)
			e.st.DB(t.Context()).Model(&store.AuditEvent{}).Where("action = ?", "record.approve").Count(&audits)
			if logs != 1 || audits != 1 {
				t.Fatalf("%d approval log entries, %d audit events", logs, audits)
			}
			approveRejectRace(t, e, dev, lab)
		})
	}
}

// oneWins sends 20 answers (made by body) to path at once as device d,
// and checks that one gets 200 and every other 409.
func oneWins(t *testing.T, e *env, d *device, path string, body func() any) {
	t.Helper()
	const n = 20
	bodies := make([]any, n)
	tokens := make([]string, n)
	for i := range bodies {
		bodies[i], tokens[i] = body(), d.token
	}
	count := e.race(path, bodies, tokens)
	if count[200] != 1 || count[409] != n-1 {
		t.Fatalf("status counts %v, want one 200 and %d 409", count, n-1)
	}
}

// TestConcurrentGrants: of 20 grants of one access request at once, one
// is stored and the others get 409 (on PostgreSQL a loser's grant meets
// the winner's in the unique index: still a 409, not a 500).
func TestConcurrentGrants(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			dev := e.newUser("alice")
			lab, bank := e.newParty("lab"), e.newParty("bank")
			rec, _ := e.submit(lab, dev.user, []byte("race"))
			e.approve(dev, rec.ID)
			var ar api.AccessResponse
			e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "loan"}, 202, &ar)
			det := e.findRequest(dev, store.KindAccess, rec.ID)
			oneWins(t, e, dev, api.Path(api.PathDeviceGrant, det.ID), func() any {
				return grantBody(t, det, dev, bank.key.Public(), e.clock.now())
			})
			var grants, logs int64
			e.st.DB(t.Context()).Model(&store.Grant{}).Count(&grants)
			e.st.DB(t.Context()).Model(&store.LogEntry{}).Where("kind = ?", store.LogGrant).Count(&logs)
			if grants != 1 || logs != 1 {
				t.Fatalf("%d grants, %d grant log entries", grants, logs)
			}
		})
	}
}

// approveRejectRace sends approvals and rejections of one record at once:
// one wins, every other answer gets 409 (not a 404 when a rejection took
// the key packets between the loser's reads), and the record is in the
// winner's state.
func approveRejectRace(t *testing.T, e *env, dev *device, lab *party) {
	t.Helper()
	rec, _ := e.submit(lab, dev.user, []byte("race of approvals and rejections"))
	det := e.findRequest(dev, store.KindApproval, rec.ID)
	const n = 20
	var rejected atomic.Int32
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := 0; i < n; i++ {
		path, body := api.Path(api.PathDeviceApprove, det.ID), signStmt(t, approvalFor(det, dev, e.clock.now()), dev.key)
		if i%2 == 1 {
			path, body = api.Path(api.PathDeviceReject, det.ID), signStmt(t, rejectionFor(det, dev, e.clock.now()), dev.key)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := e.do("POST", path, dev.token, body)
			statuses[i] = resp.StatusCode
			if resp.StatusCode == 200 && i%2 == 1 {
				rejected.Add(1)
			}
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	if count[200] != 1 || count[409] != n-1 {
		t.Fatalf("approvals and rejections at once: status counts %v, want one 200 and %d 409", count, n-1)
	}
	want := api.RecordApproved
	if rejected.Load() == 1 {
		want = api.RecordRejected
	}
	var r api.Record
	e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, &r)
	if r.State != want {
		t.Fatalf("record %s, the winning answer made it %s", r.State, want)
	}
}

func TestAttackGrants(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	thief := e.newParty("thief")
	rec, _ := e.submit(lab, dev.user, []byte("secret record"))
	e.approve(dev, rec.ID)

	var ar api.AccessResponse
	e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "loan", ExpiresIn: 600}, 202, &ar)
	det := e.findRequest(dev, store.KindAccess, rec.ID)
	now := e.clock.now()
	toThief := grantBody(t, det, dev, thief.key.Public(), now)
	// Statement naming the thief, key packet for the thief.
	toThiefStmt := func() api.GrantAnswer {
		d := det
		d.RequesterFingerprint = thief.key.Fingerprint()
		return grantBody(t, d, dev, thief.key.Public(), now)
	}()
	good := grantBody(t, det, dev, bank.key.Public(), now)
	longer := func() api.GrantAnswer {
		d := det
		t2 := d.GrantExpires.Add(time.Hour)
		d.GrantExpires = &t2
		return grantBody(t, d, dev, bank.key.Public(), now)
	}()
	badPurpose := func() api.GrantAnswer {
		d := det
		d.Purpose = "something else"
		return grantBody(t, d, dev, bank.key.Public(), now)
	}()
	partySigned := func() api.GrantAnswer {
		g := good
		g.Signature = string(mustSign(t, []byte(good.Statement), bank.key))
		return g
	}()
	cases := []struct {
		name   string
		body   any
		status int
	}{
		{"key packet to another key", api.GrantAnswer{KeyPacket: toThief.KeyPacket, Statement: good.Statement, Signature: good.Signature}, 422},
		{"key packet and statement to another key", toThiefStmt, 422},
		{"expiry beyond the request", longer, 422},
		{"other purpose", badPurpose, 422},
		{"signed by a party", partySigned, 422},
		{"garbage key packet", api.GrantAnswer{KeyPacket: []byte{1, 2, 3}, Statement: good.Statement, Signature: good.Signature}, 422},
		{"approval route", nil, 409},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snap()
			path := api.Path(api.PathDeviceGrant, det.ID)
			body := c.body
			if body == nil {
				path, body = api.Path(api.PathDeviceApprove, det.ID), api.AnswerRequest{Statement: "x", Signature: "y"}
			}
			resp, data := e.do("POST", path, dev.token, body)
			e.wantProblem(resp, data, c.status)
			e.unchanged(before)
		})
	}
	e.call("POST", api.Path(api.PathDeviceGrant, det.ID), dev.token, good, 200, nil)
	resp, data := e.do("POST", api.Path(api.PathDeviceGrant, det.ID), dev.token, good)
	e.wantProblem(resp, data, 409)

	// The bank reads; the thief and the lab cannot read the bank's grant.
	e.call("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil, 200, nil)
	for _, p := range []*party{thief, lab} {
		for _, path := range []string{api.PathRecordContent, api.PathRecordGrant} {
			resp, data := e.do("GET", api.Path(path, rec.ID), p.token, nil)
			e.wantProblem(resp, data, 404)
		}
	}
	resp, data = e.do("GET", api.Path(api.PathRecord, rec.ID), thief.token, nil)
	e.wantProblem(resp, data, 404)

	// Expiry: ten minutes later the grant is dead.
	e.clock.advance(11 * time.Minute)
	resp, data = e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)
}

func mustSign(t testing.TB, stmt []byte, k *envelope.Key) []byte {
	t.Helper()
	s, err := statement.Sign(stmt, k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGrantExpiryAndRevocation(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.TokenTTL = 24 * time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	rec, _ := e.submit(lab, dev.user, []byte("r"))
	e.approve(dev, rec.ID)
	e.grantAccess(dev, bank, rec.ID, 600)
	e.call("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil, 200, nil)
	e.clock.advance(11 * time.Minute)
	resp, data := e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)
	resp, data = e.do("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)

	// A new grant, then revoked by the device.
	e.grantAccess(dev, bank, rec.ID, 600)
	var g api.Grant
	e.call("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil, 200, &g)
	e.call("POST", api.Path(api.PathDeviceRevokeGrant, g.ID), dev.token, nil, 200, nil)
	resp, data = e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)
	before := e.snap()
	resp, data = e.do("POST", api.Path(api.PathDeviceRevokeGrant, g.ID), dev.token, nil)
	e.wantProblem(resp, data, 409)
	e.unchanged(before)
	other := e.newUser("bob")
	before = e.snap()
	resp, data = e.do("POST", api.Path(api.PathDeviceRevokeGrant, g.ID), other.token, nil)
	e.wantProblem(resp, data, 404)
	e.unchanged(before)
	var n int64
	e.st.DB(t.Context()).Model(&store.LogEntry{}).Where("kind = ?", store.LogRevocation).Count(&n)
	if n != 1 {
		t.Fatalf("%d revocation log entries", n)
	}
}

func TestAttackAuth(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	_, code := e.createUser("alice")
	dev := e.enroll(code)

	t.Run("reused enrollment code", func(t *testing.T) {
		before := e.snap()
		k := genKey(t, "second")
		resp, data := e.do("POST", api.PathEnroll, "", firstLinkRequest(t, code, dev.user, k, e.clock.now()))
		e.wantProblem(resp, data, 403)
		e.unchanged(before)
	})
	t.Run("expired enrollment code", func(t *testing.T) {
		bob, code2 := e.createUser("bob")
		e.clock.advance(25 * time.Hour)
		defer e.clock.advance(-25 * time.Hour)
		before := e.snap()
		k := genKey(t, "late")
		resp, data := e.do("POST", api.PathEnroll, "", firstLinkRequest(t, code2, bob, k, e.clock.now()))
		e.wantProblem(resp, data, 403)
		e.unchanged(before)
	})
	t.Run("reused nonce", func(t *testing.T) {
		var ch api.ChallengeResponse
		e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: dev.key.Fingerprint()}, 200, &ch)
		req := api.TokenRequest{Fingerprint: dev.key.Fingerprint(), Nonce: ch.Nonce,
			Signature: string(signChallenge(t, dev.key, ch.Nonce, dev.key.Fingerprint()))}
		e.call("POST", api.PathAuthToken, "", req, 200, nil)
		resp, data := e.do("POST", api.PathAuthToken, "", req)
		e.wantProblem(resp, data, 401)
	})
	t.Run("nonce signed by another key", func(t *testing.T) {
		other := genKey(t, "other")
		var ch api.ChallengeResponse
		e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: dev.key.Fingerprint()}, 200, &ch)
		req := api.TokenRequest{Fingerprint: dev.key.Fingerprint(), Nonce: ch.Nonce,
			Signature: string(signChallenge(t, other, ch.Nonce, dev.key.Fingerprint()))}
		resp, data := e.do("POST", api.PathAuthToken, "", req)
		e.wantProblem(resp, data, 401)
	})
	t.Run("expired nonce", func(t *testing.T) {
		var ch api.ChallengeResponse
		e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: dev.key.Fingerprint()}, 200, &ch)
		e.clock.advance(3 * time.Minute)
		defer e.clock.advance(-3 * time.Minute)
		req := api.TokenRequest{Fingerprint: dev.key.Fingerprint(), Nonce: ch.Nonce,
			Signature: string(signChallenge(t, dev.key, ch.Nonce, dev.key.Fingerprint()))}
		resp, data := e.do("POST", api.PathAuthToken, "", req)
		e.wantProblem(resp, data, 401)
	})
	t.Run("unknown fingerprint", func(t *testing.T) {
		k := genKey(t, "stranger")
		var ch api.ChallengeResponse
		e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: k.Fingerprint()}, 200, &ch)
		req := api.TokenRequest{Fingerprint: k.Fingerprint(), Nonce: ch.Nonce,
			Signature: string(signChallenge(t, k, ch.Nonce, k.Fingerprint()))}
		resp, data := e.do("POST", api.PathAuthToken, "", req)
		e.wantProblem(resp, data, 401)
	})
	t.Run("expired token", func(t *testing.T) {
		e.call("GET", api.PathDeviceRequests, dev.token, nil, 200, nil)
		e.clock.advance(16 * time.Minute)
		defer e.clock.advance(-16 * time.Minute)
		resp, data := e.do("GET", api.PathDeviceRequests, dev.token, nil)
		e.wantProblem(resp, data, 401)
	})
	t.Run("admin token", func(t *testing.T) {
		before := e.snap()
		for _, tok := range []string{"", "wrong", dev.token, testAdminToken + "x"} {
			resp, data := e.do("POST", api.PathAdminUsers, tok, api.CreateUserRequest{Handle: "eve"})
			e.wantProblem(resp, data, 401)
		}
		e.unchanged(before)
	})
	t.Run("revoked device", func(t *testing.T) {
		d2 := e.newUser("carol")
		e.addDevice(d2) // the last device cannot be revoked
		e.extend(d2, statement.ActionRevokeDevice, d2.key)
		resp, data := e.do("GET", api.PathDeviceRequests, d2.token, nil)
		e.wantProblem(resp, data, 401)
	})
	t.Run("bad ids", func(t *testing.T) {
		before := e.snap()
		for _, id := range []string{"..%2F..%2Fetc%2Fpasswd", "%27%20OR%201%3D1--", "ABCDEF0123456789ABCDEF0123456789", "1"} {
			resp, data := e.do("POST", "/v1/admin/users/"+id+"/enrollment-codes", testAdminToken, nil)
			e.wantProblem(resp, data, 404)
			resp, data = e.do("GET", "/v1/admin/users/"+id+"/devices", testAdminToken, nil)
			e.wantProblem(resp, data, 404)
		}
		e.unchanged(before)
	})
	t.Run("invalid JSON", func(t *testing.T) {
		before := e.snap()
		for _, body := range []string{`{"handle":`, `{"handle":"x","admin":true}`, `[]`, `{"handle":"x"}{"handle":"y"}`, `{"handle":5}`} {
			resp, data := e.do("POST", api.PathAdminUsers, testAdminToken, body)
			e.wantProblem(resp, data, 400)
		}
		resp, data := e.do("POST", api.PathAdminUsers, testAdminToken, `{"handle":"`+strings.Repeat("a", 5000)+`"}`)
		e.wantProblem(resp, data, 413)
		e.unchanged(before)
	})
	t.Run("echo errors are problems", func(t *testing.T) {
		resp, data := e.do("GET", "/v1/nothing-here", "", nil)
		e.wantProblem(resp, data, 404)
		resp, data = e.do("DELETE", api.PathAuthToken, "", nil)
		e.wantProblem(resp, data, 405)
	})
}

func TestIdsNeverReachTheDatabase(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	lab := e.newParty("lab")
	before := e.snap()
	for _, id := range []string{"..%2F..%2Fetc%2Fpasswd", "%27%20OR%201%3D1--", "%00", strings.Repeat("a", 33)} {
		for _, p := range []string{"/v1/records/%s", "/v1/records/%s/content", "/v1/records/%s/grant", "/v1/users/%s/keys"} {
			resp, data := e.do("GET", fmt.Sprintf(p, id), lab.token, nil)
			if resp.StatusCode != 404 && resp.StatusCode != 400 {
				t.Fatalf("%s: %d %s", fmt.Sprintf(p, id), resp.StatusCode, data)
			}
		}
	}
	e.unchanged(before)
}
