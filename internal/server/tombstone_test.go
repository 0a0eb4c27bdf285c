package server

import (
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestTombstones pins what docs/operations.md ("Tombstones") says: a
// rejected or expired record loses its blob, key packets and private
// metadata, and keeps the rest of its row, its request and audit events.
func TestTombstones(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.PendingTTL = time.Hour; c.TokenTTL = 48 * time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rejected, _ := e.submit(lab, dev.user, []byte("rejected"))
	expired, _ := e.submit(lab, dev.user, []byte("expired"))
	var before [2]store.Record
	for i, id := range []string{rejected.ID, expired.ID} {
		store.First(e.st.DB(t.Context()), &before[i], "id = ?", id)
		if len(before[i].Private) == 0 || before[i].BlobKey == nil {
			t.Fatal("the upload has no private metadata or blob")
		}
	}
	det := e.findRequest(dev, store.KindApproval, rejected.ID)
	e.call("POST", api.Path(api.PathDeviceReject, det.ID), dev.token,
		signStmt(t, rejectionFor(det, dev, e.clock.now()), dev.key), 200, nil)
	e.clock.advance(2 * time.Hour)
	if n, _, err := e.srv.Sweep(t.Context()); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}

	for i, state := range []string{store.StateRejected, store.StateExpired} {
		old := before[i]
		var r store.Record
		store.First(e.st.DB(t.Context()), &r, "id = ?", old.ID)
		// Deleted.
		if r.BlobKey != nil || r.Private != nil {
			t.Errorf("%s: blob key %v, private metadata %d bytes", state, r.BlobKey, len(r.Private))
		}
		if ok, _ := e.blobs.Exists(*old.BlobKey); ok {
			t.Errorf("%s: the ciphertext blob is still there", state)
		}
		var kps int64
		e.st.DB(t.Context()).Model(&store.RecordKeyPacket{}).Where("record_id = ?", old.ID).Count(&kps)
		if kps != 0 {
			t.Errorf("%s: %d key packets left", state, kps)
		}
		// Kept.
		if r.State != state || r.UserID != old.UserID || r.PartyID != old.PartyID || r.Profile != old.Profile ||
			r.CiphertextSHA256 != old.CiphertextSHA256 || r.Size != old.Size || string(r.Metadata) != string(old.Metadata) ||
			r.MetadataSHA256 != old.MetadataSHA256 || r.ContentType != old.ContentType || r.DeclaredSize != old.DeclaredSize ||
			r.Purpose != old.Purpose || string(r.SubmissionStatement) != string(old.SubmissionStatement) ||
			string(r.SubmissionSignature) != string(old.SubmissionSignature) || !r.CreatedAt.Equal(old.CreatedAt) {
			t.Errorf("%s: the tombstone lost a field it keeps", state)
		}
		if (state == store.StateRejected) != (len(r.DecisionStatement) > 0 && r.DecidedBy == dev.id && r.DecidedAt != nil) {
			t.Errorf("%s: decision statement %q by %q", state, r.DecisionStatement, r.DecidedBy)
		}
		var q store.Request
		store.First(e.st.DB(t.Context()), &q, "record_id = ?", old.ID)
		if wantQ := map[string]string{store.StateRejected: store.RequestAnswered, store.StateExpired: store.RequestExpired}[state]; q.State != wantQ {
			t.Errorf("%s: request is %s", state, q.State)
		}
		// Seen by the submitter; no access.
		var rj api.Record
		e.call("GET", api.Path(api.PathRecord, old.ID), lab.token, nil, 200, &rj)
		if string(rj.State) != state || rj.SubmissionStatement == "" {
			t.Errorf("%s: submitter sees %+v", state, rj)
		}
		resp, data := e.do("POST", api.Path(api.PathRecordAccess, old.ID), lab.token, api.AccessRequest{Purpose: "x"})
		e.wantProblem(resp, data, 409)
	}
}
