package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestFullFlow: enroll, upload, approve, request, grant, download (whole
// and Range), open, compare bytes, verify every statement offline. On both
// profiles and every configured database.
func TestFullFlow(t *testing.T) {
	for _, b := range storetest.Backends() {
		for _, profile := range []envelope.Profile{envelope.Compat, envelope.Modern} {
			t.Run(b.Name+"/"+string(profile), func(t *testing.T) { testFullFlow(t, b, profile) })
		}
	}
}

func testFullFlow(t *testing.T, b storetest.Backend, profile envelope.Profile) {
	e := newEnv(t, b, nil)
	dev := e.newUser("alice")
	lab := e.newParty("Acme Lab")
	bank := e.newParty("Bank")

	// Recovery key, signed into the chain by the device: records must be
	// sealed to it too.
	recovery := genKey(t, "recovery")
	e.extend(dev, statement.ActionSetRecovery, recovery.Public())
	if keys := e.recipientKeys(lab, dev.user); len(keys) != 2 {
		t.Fatalf("%d recipient keys, want device + recovery", len(keys))
	}

	plaintext := randBytes(300<<10 + 7)
	u := e.prepare(lab, dev.user, plaintext, profile)
	resp, data := e.send(lab, dev.user, u)
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %s", resp.StatusCode, data)
	}
	var rec api.Record
	e.call("GET", resp.Header.Get("Location"), lab.token, nil, 200, &rec)
	if rec.State != api.RecordPending || rec.Profile != string(profile) || rec.CiphertextSHA256 != u.digest.Hex() {
		t.Fatalf("record after upload: %+v", rec)
	}
	// The bank may not see the lab's record.
	r2, d2 := e.do("GET", api.Path(api.PathRecord, rec.ID), bank.token, nil)
	e.wantProblem(r2, d2, 404)

	// The device sees what it needs, can open its key packet, checks the
	// submitter's signature.
	det := e.findRequest(dev, store.KindApproval, rec.ID)
	kp, err := envelope.ParseKeyPacket(det.KeyPacket)
	if err != nil {
		t.Fatal(err)
	}
	if err := envelope.CanOpen(kp, envelope.Profile(det.Profile), dev.key); err != nil {
		t.Fatalf("device cannot open its key packet: %v", err)
	}
	labKey, _ := envelope.ParseKey([]byte(det.SubmitterKey))
	if err := statement.Verify([]byte(det.SubmissionStatement), []byte(det.SubmissionSignature), labKey); err != nil {
		t.Fatalf("submission signature: %v", err)
	}
	priv, err := envelope.Open(bytes.NewReader(det.Private), dev.key)
	if err != nil {
		t.Fatal(err)
	}
	if title, _ := io.ReadAll(priv); !bytes.Contains(title, []byte("Blood test")) {
		t.Fatalf("private metadata: %s", title)
	}
	e.call("POST", api.Path(api.PathDeviceApprove, det.ID), dev.token, signStmt(t, approvalFor(det, dev, e.clock.now()), dev.key), 200, nil)

	e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, &rec)
	if rec.State != api.RecordApproved || rec.DeviceFingerprint != dev.key.Fingerprint() {
		t.Fatalf("record after approval: %+v", rec)
	}
	// Offline verification of the approval.
	devKey := dev.key.Public()
	if err := statement.Verify([]byte(rec.DecisionStatement), []byte(rec.DecisionSignature), devKey); err != nil {
		t.Fatalf("approval signature: %v", err)
	}
	ap, err := statement.ParseApproval([]byte(rec.DecisionStatement))
	if err != nil || ap.Record != rec.ID || ap.Ciphertext != u.digest {
		t.Fatalf("approval statement %+v %v", ap, err)
	}

	// The bank asks for access; the device grants it.
	gdet := e.grantAccess(dev, bank, rec.ID, 3600)
	if gdet.ApprovalStatement != rec.DecisionStatement || gdet.RequesterFingerprint != bank.key.Fingerprint() || gdet.Purpose != "mortgage check" {
		t.Fatalf("access request detail: %+v", gdet)
	}

	// Download and open.
	resp, full := e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d %s", resp.StatusCode, full)
	}
	r, err := envelope.Open(bytes.NewReader(full), bank.key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("opened plaintext differs (%v)", err)
	}
	// Range: the tail of the message is the data packet as uploaded.
	bodyStart := len(full) - int(u.digest.Size)
	rng := fmt.Sprintf("bytes=%d-%d", bodyStart+1000, bodyStart+1999)
	resp, part := e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil, "Range", rng)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, full[bodyStart+1000:bodyStart+2000]) {
		t.Fatalf("range download: %d, %d bytes", resp.StatusCode, len(part))
	}
	resp, part = e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil, "Range", "bytes=0-9")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, full[:10]) {
		t.Fatalf("range over the key packet: %d", resp.StatusCode)
	}

	// The grant can be verified offline.
	var g api.Grant
	e.call("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil, 200, &g)
	if err := statement.Verify([]byte(g.Statement), []byte(g.Signature), devKey); err != nil {
		t.Fatal(err)
	}
	gs, err := statement.ParseGrant([]byte(g.Statement))
	if err != nil || gs.Grantee != bank.key.Fingerprint() || gs.Record != rec.ID {
		t.Fatalf("grant statement %+v %v", gs, err)
	}
	// The bank can now see the record; the lab has no grant → no content.
	e.call("GET", api.Path(api.PathRecord, rec.ID), bank.token, nil, 200, nil)
	resp, data = e.do("GET", api.Path(api.PathRecordContent, rec.ID), lab.token, nil)
	e.wantProblem(resp, data, 404)

	// Lists.
	var rl api.RecordList
	e.call("GET", api.PathPartyRecords, lab.token, nil, 200, &rl)
	if len(rl.Records) != 1 {
		t.Fatalf("party records: %d", len(rl.Records))
	}
	var gl api.GrantList
	e.call("GET", api.PathPartyGrants, bank.token, nil, 200, &gl)
	if len(gl.Grants) != 1 {
		t.Fatalf("party grants: %d", len(gl.Grants))
	}
	e.call("GET", api.PathDeviceGrants, dev.token, nil, 200, &gl)
	if len(gl.Grants) != 1 {
		t.Fatalf("device grants: %d", len(gl.Grants))
	}
	e.call("GET", api.PathDeviceRecords, dev.token, nil, 200, &rl)
	if len(rl.Records) != 1 || rl.Records[0].State != api.RecordApproved {
		t.Fatalf("device records: %+v", rl)
	}
	// The log holds the chain links (first device, recovery key), the
	// approval and the grant.
	var kinds []string
	e.st.DB(t.Context()).Model(&store.LogEntry{}).Order("\"index\"").Pluck("kind", &kinds)
	want := []string{store.LogChainLink, store.LogChainLink, store.LogApproval, store.LogGrant}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("log kinds %v, want %v", kinds, want)
	}
	// Revoke: downloads stop.
	e.call("POST", api.Path(api.PathDeviceRevokeGrant, g.ID), dev.token, nil, 200, nil)
	resp, data = e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
	e.wantProblem(resp, data, 404)
}
