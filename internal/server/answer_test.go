package server

import (
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestSecondAnswerAfterRejection: rejecting deletes the record's key
// packets, yet a second answer from the user's device is a 409
// (already-answered), not a 404; another user's device still gets 404.
func TestSecondAnswerAfterRejection(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	other := e.newUser("mallory")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("unwanted"))
	det := e.findRequest(dev, store.KindApproval, rec.ID)
	now := e.clock.now()
	rej := signStmt(t, rejectionFor(det, dev, now), dev.key)
	e.call("POST", api.Path(api.PathDeviceReject, det.ID), dev.token, rej, 200, nil)

	before := e.snap()
	for _, c := range []struct {
		path string
		body any
	}{
		{api.Path(api.PathDeviceReject, det.ID), rej},
		{api.Path(api.PathDeviceApprove, det.ID), signStmt(t, approvalFor(det, dev, now), dev.key)},
	} {
		resp, data := e.do("POST", c.path, dev.token, c.body)
		if p := e.wantProblem(resp, data, 409); p.Type != api.ProblemAlreadyAnswered {
			t.Fatalf("%s: problem type %s, want already-answered", c.path, p.Type)
		}
		resp, data = e.do("POST", c.path, other.token, c.body)
		e.wantProblem(resp, data, 404)
	}
	e.unchanged(before)
	var r api.Record
	e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, &r)
	if r.State != api.RecordRejected {
		t.Fatalf("record is %s", r.State)
	}
}

// TestAnswerAfterExpiry: once the sweeper expired a pending record (and
// deleted its key packets), an answer is a 409 (expired); before the sweep,
// an answer after the expiry time is the same 409.
func TestAnswerAfterExpiry(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.PendingTTL = time.Hour; c.TokenTTL = 48 * time.Hour })
	dev := e.newUser("alice")
	other := e.newUser("mallory")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("late"))
	det := e.findRequest(dev, store.KindApproval, rec.ID)
	e.clock.advance(2 * time.Hour)

	for _, sweep := range []bool{false, true} {
		if sweep {
			if n, _, err := e.srv.Sweep(t.Context()); err != nil || n != 1 {
				t.Fatalf("sweep: %d %v", n, err)
			}
		}
		before := e.snap()
		body := signStmt(t, approvalFor(det, dev, e.clock.now()), dev.key)
		resp, data := e.do("POST", api.Path(api.PathDeviceApprove, det.ID), dev.token, body)
		if p := e.wantProblem(resp, data, 409); p.Type != api.ProblemExpired {
			t.Fatalf("swept=%v: problem type %s, want expired", sweep, p.Type)
		}
		resp, data = e.do("POST", api.Path(api.PathDeviceApprove, det.ID), other.token, body)
		e.wantProblem(resp, data, 404)
		e.unchanged(before)
	}
}

// TestRefuse: an empty body and {} both refuse; an expired (not yet swept)
// request is a 409 like on the other answer routes, and changes nothing;
// a second refusal is a 409.
func TestRefuse(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.RequestTTL = time.Hour; c.TokenTTL = 48 * time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	rec, _ := e.submit(lab, dev.user, []byte("r"))
	e.approve(dev, rec.ID)

	ask := func() string {
		var ar api.AccessResponse
		e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "loan"}, 202, &ar)
		return ar.RequestID
	}
	q1, q2 := ask(), ask()
	// While the request is open, the party's grant is simply not there.
	resp, data := e.do("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)
	// Empty body, no Content-Type.
	e.call("POST", api.Path(api.PathDeviceRefuse, q1), dev.token, nil, 200, nil)
	e.call("POST", api.Path(api.PathDeviceRefuse, q2), dev.token, "{}", 200, nil)
	// The refusal of its newest request is what the party learns; another
	// party that asked nothing still sees a plain 404.
	resp, data = e.do("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil)
	if p := e.wantProblem(resp, data, 403); p.Type != api.ProblemAccessRefused || !strings.Contains(p.Detail, q2) {
		t.Fatalf("grant after refusal: %s %q", p.Type, p.Detail)
	}
	resp, data = e.do("GET", api.Path(api.PathRecordGrant, rec.ID), lab.token, nil)
	if p := e.wantProblem(resp, data, 404); p.Type != api.ProblemNotFound {
		t.Fatalf("another party: %s", p.Type)
	}

	before := e.snap()
	resp, data = e.do("POST", api.Path(api.PathDeviceRefuse, q1), dev.token, nil)
	if p := e.wantProblem(resp, data, 409); p.Type != api.ProblemAlreadyAnswered {
		t.Fatalf("second refusal: %s", p.Type)
	}
	e.unchanged(before)
	q3 := ask()
	// A newer open request replaces the refusal: the party waits again.
	resp, data = e.do("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)
	before = e.snap()
	resp, data = e.do("POST", api.Path(api.PathDeviceRefuse, q3), dev.token, `{"reason":"x"}`)
	e.wantProblem(resp, data, 400)
	e.unchanged(before)

	e.clock.advance(2 * time.Hour)
	before = e.snap()
	resp, data = e.do("POST", api.Path(api.PathDeviceRefuse, q3), dev.token, nil)
	if p := e.wantProblem(resp, data, 409); p.Type != api.ProblemExpired {
		t.Fatalf("refusing an expired request: %s", p.Type)
	}
	e.unchanged(before)
	var q store.Request
	store.First(e.st.DB(t.Context()), &q, "id = ?", q3)
	if q.State != store.RequestOpen || q.Answer != "" {
		t.Fatalf("expired request was changed: %+v", q)
	}
}

// TestInvalidKeyProblems: an unacceptable public key is a 422 whose type
// says so (invalid-key), on every route that takes one, and changes nothing.
func TestInvalidKeyProblems(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	userID, code := e.createUser("alice")
	privArmor, err := genKey(t, "with-private").MarshalPrivate([]byte("pass"), envelope.S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"not a key", string(privArmor)} {
		before := e.snap()
		for _, c := range []struct {
			method, path, token string
			body                any
		}{
			{"POST", api.PathEnroll, "", api.EnrollRequest{Code: code, PublicKey: key}},
			{"POST", api.PathLinkRequests, "", api.LinkRequestCreate{User: userID, PublicKey: key}},
			{"POST", api.PathAdminParties, testAdminToken, api.CreatePartyRequest{Name: "p", PublicKey: key}},
		} {
			resp, data := e.do(c.method, c.path, c.token, c.body)
			if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemInvalidKey {
				t.Fatalf("%s %s: type %s", c.method, c.path, p.Type)
			}
		}
		e.unchanged(before)
	}
}
