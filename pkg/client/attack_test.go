package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// The attacks of issue 7, run by an operator who holds the database (the
// test's store), against the real server and the real clients.

// memPins is a PinStore in memory.
type memPins struct {
	mu     sync.Mutex
	m      map[string]*keychain.Pin
	writes int
}

func (p *memPins) Pin(user string) (*keychain.Pin, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if x, ok := p.m[user]; ok {
		c := *x
		return &c, nil
	}
	return nil, nil
}

func (p *memPins) SetPin(x *keychain.Pin) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*keychain.Pin{}
	}
	c := *x
	p.m[x.User] = &c
	p.writes++
	return nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sealApproved uploads plaintext as party and approves it as dev.
func sealApproved(t *testing.T, ctx context.Context, party, dev *Client, user, plaintext string, profile envelope.Profile) string {
	t.Helper()
	up, err := party.SealAndUpload(ctx, user, strings.NewReader(plaintext), UploadOptions{Profile: profile,
		Private: &PrivateMetadata{Title: plaintext}})
	if err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	rec, err := party.WaitDecided(ctx, up.Record.ID)
	if err != nil || rec.State != api.RecordApproved {
		t.Fatalf("record %s: %v %v", up.Record.ID, rec, err)
	}
	// The approval carries the session key id the sealer drew.
	a, err := statement.ParseApproval([]byte(rec.DecisionStatement))
	if err != nil || a.SessionKeyID != up.SessionKeyID {
		t.Fatalf("approval session key id: %v", err)
	}
	return up.Record.ID
}

// openRequest returns the device's single open request of kind.
func openRequest(t *testing.T, ctx context.Context, dev *Client, kind string) *api.RequestDetail {
	t.Helper()
	reqs, err := dev.DeviceRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.Kind == kind {
			d, err := dev.DeviceRequest(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("no open %s request", kind)
	return nil
}

func (e *testEnv) keyPackets(rec string) []store.RecordKeyPacket {
	e.t.Helper()
	var kps []store.RecordKeyPacket
	if err := e.st.DB(context.Background()).Where("record_id = ?", rec).Order("id").Find(&kps).Error; err != nil || len(kps) == 0 {
		e.t.Fatalf("key packets of %s: %v", rec, err)
	}
	return kps
}

// Attack 1: the operator copies secret record X's key packet onto harmless
// record Y and asks for Y. The device refuses to re-wrap: Y's approval
// binds other key packets, whatever the server serves.
func TestSwappedKeyPacketIsNotRewrapped(t *testing.T) {
	for _, profile := range []envelope.Profile{envelope.Compat, envelope.Modern} {
		t.Run(string(profile), func(t *testing.T) {
			e := newTestEnv(t)
			ctx := ctxT(t)
			user, dev, lab := e.setup(ctx, "alice")
			x := sealApproved(t, ctx, lab, dev, user, "HIV test: negative", profile)
			y := sealApproved(t, ctx, lab, dev, user, "Lunch menu", profile)

			from, to := e.keyPackets(x), e.keyPackets(y)
			if err := e.st.DB(ctx).Model(&store.RecordKeyPacket{}).Where("id = ?", to[0].ID).Update("packet", from[0].Packet).Error; err != nil {
				t.Fatal(err)
			}
			op := identity(t, "operator")
			if _, err := e.admin.CreateParty(ctx, "Operator", op.Key.Public().Armor()); err != nil && !IsConflict(err) {
				t.Fatal(err)
			}
			operator := e.client(op)
			if _, err := operator.RequestAccess(ctx, y, "routine audit", 0); err != nil {
				t.Fatal(err)
			}
			d := openRequest(t, ctx, dev, KindAccess)
			_, err := dev.Check(ctx, d)
			if !errors.Is(err, ErrVerification) || ReasonOf(err) != statement.ReasonKeyPackets {
				t.Fatalf("a swapped key packet passed the device's check: %v", err)
			}
			// Even a server that also serves X's packets as Y's whole set
			// fails: Y's approval binds Y's packets and Y's session key.
			d.KeyPackets = [][]byte{from[0].Packet}
			if _, err := dev.Check(ctx, d); !errors.Is(err, ErrVerification) {
				t.Fatalf("X's packet set served for Y passed: %v", err)
			}
			if _, err := dev.Refuse(ctx, d.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := operator.RecordGrant(ctx, y); err == nil {
				t.Fatal("the operator holds a grant")
			}
		})
	}
}

// Attack 2: the operator's party submits a record whose key packet is
// copied from approved record X, with a data packet of its own. The device
// that approved X recognizes X's session key and rejects the record with
// the reason; so does another device of the user that never saw X, once
// it has learnt the session keys of the user's approvals.
func TestTransplantedKeyPacketIsRejected(t *testing.T) {
	for _, profile := range []envelope.Profile{envelope.Compat, envelope.Modern} {
		t.Run(string(profile), func(t *testing.T) {
			e := newTestEnv(t)
			ctx := ctxT(t)
			user, dev, lab := e.setup(ctx, "bob")
			// A second device that will never look at X.
			dev2 := e.addDevice(ctx, dev, user, "bob-device-2")
			x := sealApproved(t, ctx, lab, dev, user, "HIV test: negative", profile)

			op := identity(t, "operator")
			if _, err := e.admin.CreateParty(ctx, "Operator", op.Key.Public().Armor()); err != nil && !IsConflict(err) {
				t.Fatal(err)
			}
			operator := e.client(op)
			forged := forgeMessage(t, e.keyPackets(x), profile)
			up, err := operator.Upload(ctx, user, bytes.NewReader(forged), UploadOptions{Purpose: "Lunch menu"})
			if err != nil {
				t.Fatal(err)
			}
			d := openRequest(t, ctx, dev, KindApproval)
			ch, err := dev.OwnChain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Everything the record itself shows checks out...
			cr, err := CheckRequest(d, dev.Identity(), ch)
			if err != nil {
				t.Fatalf("the forged record should pass the per-record checks: %v", err)
			}
			// ...but the device knows its session key from X.
			if _, err := dev.Check(ctx, d); !errors.Is(err, ErrSessionKeyReused) || ReasonOf(err) != statement.ReasonSessionKeyReused {
				t.Fatalf("the device that approved X accepted a transplanted key packet: %v", err)
			}
			// The second device never checked X: it learns X's session key
			// from the user's approvals before deciding.
			d2 := openRequest(t, ctx, dev2, KindApproval)
			ch2, err := dev2.OwnChain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := dev2.LearnSessionKeys(ctx, ch2); err != nil || n != 1 {
				t.Fatalf("learnt %d session keys: %v", n, err)
			}
			if _, err := dev2.Check(ctx, d2); !errors.Is(err, ErrSessionKeyReused) {
				t.Fatalf("the other device accepted a transplanted key packet: %v", err)
			}
			// ApproveRequest checks again, for callers that skip Check.
			for name, c := range map[string]*Client{"approving device": dev, "other device": dev2} {
				cr2 := *cr
				_, err := c.ApproveRequest(ctx, &cr2)
				if !errors.Is(err, ErrSessionKeyReused) || ReasonOf(err) != statement.ReasonSessionKeyReused {
					t.Fatalf("%s approved a transplanted key packet: %v", name, err)
				}
			}
			if _, err := dev.RejectRequest(ctx, d, statement.ReasonSessionKeyReused); err != nil {
				t.Fatal(err)
			}
			rec, err := operator.WaitDecided(ctx, up.Record.ID)
			if err != nil || rec.State != api.RecordRejected {
				t.Fatalf("record %v %v", rec, err)
			}
			rj, err := statement.ParseRejection([]byte(rec.DecisionStatement))
			if err != nil || rj.Reason != statement.ReasonSessionKeyReused {
				t.Fatalf("rejection %+v %v", rj, err)
			}
			if _, err := operator.RequestAccess(ctx, up.Record.ID, "lunch", 0); err == nil {
				t.Fatal("access request on a rejected record")
			}
		})
	}
}

// forgeMessage is what an operator can build: the stored key packets of
// another record, then a data packet of the same profile sealed to a key
// of its own.
func forgeMessage(t *testing.T, kps []store.RecordKeyPacket, profile envelope.Profile) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, kp := range kps {
		buf.Write(kp.Packet)
	}
	var own bytes.Buffer
	w, err := envelope.Seal(&own, profile, identity(t, "operator").Key)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("soup of the day"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := envelope.Split(&own)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(&buf, m.Data); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// addDevice links a new device to the user, approved by dev.
func (e *testEnv) addDevice(ctx context.Context, dev *Client, user, name string) *Client {
	e.t.Helper()
	nd := e.client(identity(e.t, name))
	lr, err := nd.RequestLink(ctx, user, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	d := openRequest(e.t, ctx, dev, KindDevice)
	cr, err := dev.Check(ctx, d)
	if err != nil {
		e.t.Fatal(err)
	}
	if keychain.Code(cr.NewDevice) != lr.Code {
		e.t.Fatalf("codes differ: %s on the new device, %s on the old", lr.Code, keychain.Code(cr.NewDevice))
	}
	if _, err := dev.AddDevice(ctx, cr, "0000-0000-0000-0000-0000"); !errors.Is(err, ErrCodeMismatch) {
		e.t.Fatalf("a wrong code added the device: %v", err)
	}
	if _, err := dev.AddDevice(ctx, cr, lr.Code); err != nil {
		e.t.Fatal(err)
	}
	st, err := nd.LinkState(ctx, lr.ID)
	if err != nil || st.State != "approved" || st.DeviceID == "" {
		e.t.Fatalf("link request %+v %v", st, err)
	}
	return nd
}

// Attack 3 and P3/P4: the keys a record is sealed to come from the
// device-signed chain; the operator's additions are refused at seal time
// and an approval by a device off the chain is refused at verify time.
func TestChainDecidesTheKeys(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "carol")
	pins := &memPins{}
	lab.pins = pins

	keys, err := lab.RecipientKeys(ctx, user)
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %d %v", len(keys), err)
	}
	pinned, _ := pins.Pin(user)
	if pinned == nil || pinned.Genesis != dev.Identity().Fingerprint() || pinned.Seq != 0 {
		t.Fatalf("pin on first use: %+v", pinned)
	}
	// The same chain again: the pin stands, unwritten.
	if _, err := lab.RecipientKeys(ctx, user); err != nil || pins.writes != 1 {
		t.Fatalf("the same chain again: %v, the pin written %d times, want once", err, pins.writes)
	}

	// A second device, added by the first; a recovery key set by a link.
	dev2 := e.addDevice(ctx, dev, user, "carol-device-2")
	rk := identity(t, "carol-recovery")
	if _, err := dev2.ExtendChain(ctx, statement.ActionSetRecovery, rk.Key.Public()); err != nil {
		t.Fatal(err)
	}
	if keys, err = lab.RecipientKeys(ctx, user); err != nil || len(keys) != 3 {
		t.Fatalf("keys after add and recovery: %d %v", len(keys), err)
	}
	if p, _ := pins.Pin(user); p.Seq != 2 || pins.writes != 2 {
		t.Fatalf("pin after add and recovery: %+v, written %d times, want twice", p, pins.writes)
	}

	// The operator writes a link of its own into the database: an
	// add-device signed by its key. The chain no longer verifies.
	op := identity(t, "operator")
	ch, err := lab.UserChain(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := ch.Sign(statement.ActionAddDevice, op.Key, op.Key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var last store.ChainLink
	if err := e.st.DB(ctx).Where("user_id = ?", user).Order("seq DESC").First(&last).Error; err != nil {
		t.Fatal(err)
	}
	row := last
	row.ID, row.Seq, row.Statement, row.Signature, row.PublicKey = store.NewID(), last.Seq+1, []byte(forged.Statement), []byte(forged.Signature), []byte(forged.PublicKey)
	if err := e.st.DB(ctx).Create(&row).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := lab.RecipientKeys(ctx, user); !errors.Is(err, keychain.ErrChain) || !strings.Contains(err.Error(), "not an active device") {
		t.Fatalf("a link signed by the operator's key was accepted: %v", err)
	}
	if _, err := lab.SealAndUpload(ctx, user, strings.NewReader("x"), UploadOptions{}); !errors.Is(err, keychain.ErrChain) {
		t.Fatalf("seal to a forged chain: %v", err)
	}
	if err := e.st.DB(ctx).Delete(&row).Error; err != nil {
		t.Fatal(err)
	}

	// The operator drops the newest links (a rollback): the pin refuses it.
	var links []store.ChainLink
	if err := e.st.DB(ctx).Where("user_id = ?", user).Order("seq").Find(&links).Error; err != nil {
		t.Fatal(err)
	}
	if err := e.st.DB(ctx).Delete(&links[len(links)-1]).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := lab.RecipientKeys(ctx, user); !errors.Is(err, keychain.ErrPin) {
		t.Fatalf("a rolled-back chain was accepted: %v", err)
	}
	if err := e.st.DB(ctx).Create(&links[len(links)-1]).Error; err != nil {
		t.Fatal(err)
	}

	// An approval by a device the operator put in the database (not on
	// the chain) is refused by the party's verify.
	rec := sealApproved(t, ctx, lab, dev, user, "statement", envelope.Compat)
	opDev := store.Device{ID: store.NewID(), UserID: user, Fingerprint: op.Fingerprint(), PublicKey: op.Key.Public().Armor(),
		Status: store.DeviceActive, PushKind: "local"}
	if err := e.st.DB(ctx).Create(&opDev).Error; err != nil {
		t.Fatal(err)
	}
	var r store.Record
	if err := e.st.DB(ctx).First(&r, "id = ?", rec).Error; err != nil {
		t.Fatal(err)
	}
	a, err := statement.ParseApproval(r.DecisionStatement)
	if err != nil {
		t.Fatal(err)
	}
	a.Device = op.Fingerprint()
	stmt, sig, err := signStatement(a, op)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.DB(ctx).Model(&store.Record{}).Where("id = ?", rec).Updates(map[string]any{
		"decision_statement": stmt, "decision_signature": sig, "decided_by": opDev.ID}).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := lab.VerifyRecord(ctx, rec, false, nil); !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "not on user") {
		t.Fatalf("an approval by the operator's device was accepted: %v", err)
	}
	// And the device row makes the (honest) server demand a key packet
	// for the operator's device, which a party sealing to the chain does
	// not write: the upload is refused, nothing is sealed to the operator.
	if _, err := lab.SealAndUpload(ctx, user, strings.NewReader("y"), UploadOptions{}); StatusOf(err) != 422 {
		t.Fatalf("upload with an operator device in the database: %v", err)
	}

	// Revoking by a link: the party seals to one key fewer.
	if err := e.st.DB(ctx).Delete(&opDev).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := dev2.ExtendChain(ctx, statement.ActionRevokeDevice, dev.Identity().Key); err != nil {
		t.Fatal(err)
	}
	if keys, err = lab.RecipientKeys(ctx, user); err != nil || len(keys) != 2 {
		t.Fatalf("keys after revocation: %d %v", len(keys), err)
	}
	if _, err := dev.DeviceRequests(ctx); StatusOf(err) != 401 {
		t.Fatalf("the revoked device still logs in: %v", err)
	}
}

// A reset by the operator starts a new chain; a party that pinned the old
// one refuses it until it re-pins on purpose.
func TestResetNeedsRepin(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "dora")
	pins := &memPins{}
	lab.pins = pins
	if _, err := lab.RecipientKeys(ctx, user); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.NewEnrollmentCode(ctx, user); !IsConflict(err) {
		t.Fatalf("a code for a user with a chain: %v", err)
	}
	code, err := e.admin.ResetUser(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.DeviceRequests(ctx); StatusOf(err) != 401 {
		t.Fatalf("a device of the old chain still logs in: %v", err)
	}
	nd := e.client(identity(t, "dora-new-phone"))
	if _, err := nd.Enroll(ctx, code.Code, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.RecipientKeys(ctx, user); !errors.Is(err, keychain.ErrPin) {
		t.Fatalf("a replaced chain was accepted: %v", err)
	}
	if err := pins.SetPin(&keychain.Pin{User: user, Genesis: nd.Identity().Fingerprint(), Seq: -1}); err != nil {
		t.Fatal(err)
	}
	keys, err := lab.RecipientKeys(ctx, user)
	if err != nil || len(keys) != 1 || keys[0].Fingerprint() != nd.Identity().Fingerprint() {
		t.Fatalf("after re-pin: %v %v", keys, err)
	}
}

// The race of attack 2: record X is still pending when the operator
// submits a record with X's key packets. A device that has checked X
// claimed its session key then, so the copy is refused whichever comes
// first to the user, and X can still be approved.
func TestTransplantFromPendingRecord(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "erin")
	up, err := lab.SealAndUpload(ctx, user, strings.NewReader("HIV test: negative"), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dx := openRequest(t, ctx, dev, KindApproval)
	crx, err := dev.Check(ctx, dx)
	if err != nil {
		t.Fatal(err)
	}
	op := identity(t, "operator")
	if _, err := e.admin.CreateParty(ctx, "Operator", op.Key.Public().Armor()); err != nil && !IsConflict(err) {
		t.Fatal(err)
	}
	z, err := e.client(op).Upload(ctx, user, bytes.NewReader(forgeMessage(t, e.keyPackets(up.Record.ID), envelope.Compat)), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := dev.DeviceRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.RecordID != z.Record.ID {
			continue
		}
		dz, err := dev.DeviceRequest(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.Check(ctx, dz); !errors.Is(err, ErrSessionKeyReused) {
			t.Fatalf("a copy of a pending record's key packet passed: %v", err)
		}
	}
	if _, err := dev.ApproveRequest(ctx, crx); err != nil {
		t.Fatalf("the original record: %v", err)
	}
}

// A party that seals a plain title instead of the private metadata JSON
// (issue 8): the device cannot show it, so it rejects the record at once
// with a signed reason the party reads, instead of leaving it pending.
func TestMalformedPrivateMetadataIsRejected(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "fay")
	keys, err := lab.RecipientKeys(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	var private bytes.Buffer
	w, err := envelope.Seal(&private, envelope.Compat, keys...)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Lunch menu")) // not {"title": …}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	sw, err := envelope.Seal(&msg, envelope.Compat, keys...)
	if err != nil {
		t.Fatal(err)
	}
	sw.Write([]byte("soup"))
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	meta := []byte(`{"content_type":"text/plain","size":4}`)
	sub := statement.Submission{User: user, Submitter: lab.Identity().Fingerprint(), KeyPackets: sw.KeyPackets(),
		Ciphertext: sw.Digest(), MetadataSHA256: statement.MetadataDigest(meta, private.Bytes())}
	stmt, sig, err := signStatement(&sub, lab.Identity())
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct {
		name string
		data []byte
	}{{api.PartMetadata, meta}, {api.PartPrivate, private.Bytes()}, {api.PartBody, msg.Bytes()},
		{api.PartStatement, stmt}, {api.PartSignature, sig}} {
		pw, err := mw.CreateFormField(p.name)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(p.data)
	}
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, lab.url(api.Path(api.PathUserRecords, user)), &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if _, err := lab.authorize(ctx, req, authKey); err != nil {
		t.Fatal(err)
	}
	resp, err := lab.do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rec api.Record
	err = json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %v", resp.StatusCode, err)
	}

	d := openRequest(t, ctx, dev, KindApproval)
	_, err = dev.Check(ctx, d)
	if ReasonOf(err) != statement.ReasonMetadata {
		t.Fatalf("malformed private metadata: %v", err)
	}
	if _, err := dev.RejectRequest(ctx, d, ReasonOf(err)); err != nil {
		t.Fatal(err)
	}
	got, err := lab.WaitDecided(ctx, rec.ID)
	if err != nil || got.State != api.RecordRejected {
		t.Fatalf("record %v %v", got, err)
	}
	rj, err := statement.ParseRejection([]byte(got.DecisionStatement))
	if err != nil || rj.Reason != statement.ReasonMetadata {
		t.Fatalf("rejection %+v %v", rj, err)
	}
	// The party can check the device's signature on the reason.
	ch, err := lab.UserChain(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	key, err := chainDevice(ch, rj.Device)
	if err != nil {
		t.Fatal(err)
	}
	if err := statement.Verify([]byte(got.DecisionStatement), []byte(got.DecisionSignature), key); err != nil {
		t.Fatal(err)
	}
}

// Attack: the operator edits a small record's ciphertext where the
// database keeps it (inline_ciphertexts): a flipped byte, or another
// approved record's data packet. The party opens neither: the approval
// binds the data packet's digest, and the OpenPGP integrity check holds.
func TestEditedInlineCiphertextIsRefused(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "alice")
	x := sealApproved(t, ctx, lab, dev, user, "HIV test: negative", envelope.Compat)
	y := sealApproved(t, ctx, lab, dev, user, "Lunch menu", envelope.Compat)
	if _, err := lab.RequestAccess(ctx, x, "check", 0); err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	if _, _, err := lab.OpenRecordTo(ctx, x, io.Discard, OpenOptions{}); err != nil {
		t.Fatalf("the untouched record: %v", err)
	}
	inline := func(rec string) []byte {
		var c store.InlineCiphertext
		if err := store.First(e.st.DB(ctx), &c, "record_id = ?", rec); err != nil {
			t.Fatalf("record %s is not kept in the database: %v", rec, err)
		}
		return c.Data
	}
	orig := inline(x)
	flipped := bytes.Clone(orig)
	flipped[len(flipped)-30] ^= 1
	for name, data := range map[string][]byte{"a flipped byte": flipped, "another record's data packet": inline(y)} {
		if err := e.st.DB(ctx).Model(&store.InlineCiphertext{}).Where("record_id = ?", x).Update("data", data).Error; err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, _, err := lab.OpenRecordTo(ctx, x, &out, OpenOptions{}); err == nil || out.Len() != 0 {
			t.Fatalf("%s: opened (%v), %d bytes written", name, err, out.Len())
		}
	}
}
