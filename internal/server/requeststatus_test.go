package server

import (
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestPartyRequestStatus: a party can see where each of its own access
// requests stands, so it waits for that request's answer. A refusal of a
// new request shows as refused even though the party still holds a valid
// grant from an older one (which /grant keeps serving). Nobody else sees
// the request.
func TestPartyRequestStatus(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.RequestTTL, c.TokenTTL = time.Hour, 48*time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	rec, _ := e.submit(lab, dev.user, []byte("x"))
	e.approve(dev, rec.ID)

	status := func(id string) api.AccessStatus {
		var st api.AccessStatus
		e.call("GET", api.Path(api.PathPartyRequest, id), bank.token, nil, 200, &st)
		return st
	}
	old := e.grantAccess(dev, bank, rec.ID, 3600)
	st := status(old.ID)
	if st.State != api.RequestAnswered || st.Answer != api.AnswerGranted || st.GrantID == "" || st.RecordID != rec.ID {
		t.Fatalf("granted request: %+v", st)
	}

	var ar api.AccessResponse
	e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "again"}, 202, &ar)
	st = status(ar.RequestID)
	if st.State != api.RequestOpen || st.Answer != "" {
		t.Fatalf("open request: %+v", st)
	}
	e.call("POST", api.Path(api.PathDeviceRefuse, ar.RequestID), dev.token, nil, 200, nil)
	st = status(ar.RequestID)
	if st.State != api.RequestAnswered || st.Answer != api.AnswerRefused || st.GrantID != "" {
		t.Fatalf("refused request: %+v", st)
	}
	// The older grant is still served: the grant route alone cannot tell
	// the party that this request was refused.
	e.call("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil, 200, nil)

	// Only the requester sees its request; approval requests are not
	// party requests.
	e.call("GET", api.Path(api.PathPartyRequest, ar.RequestID), lab.token, nil, 404, nil)
	appr := e.findRequestAny(rec.ID)
	e.call("GET", api.Path(api.PathPartyRequest, appr), lab.token, nil, 404, nil)

	e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "late"}, 202, &ar)
	e.clock.advance(2 * time.Hour)
	st = status(ar.RequestID)
	if st.State != api.RequestExpired {
		t.Fatalf("request past its expiry: %+v", st)
	}
}

// findRequestAny returns the id of the record's approval request.
func (e *env) findRequestAny(recordID string) string {
	e.t.Helper()
	var q store.Request
	if err := store.First(e.st.DB(e.t.Context()), &q, "record_id = ? AND kind = ?", recordID, store.KindApproval); err != nil {
		e.t.Fatal(err)
	}
	return q.ID
}
