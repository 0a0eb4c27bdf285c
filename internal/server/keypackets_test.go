package server

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestKeyPacketsBinding: the submission binds the message's key packets
// (key-packets-sha256); the server stores the digest, serves a device all
// of the record's packets in message order (whatever order the party
// sealed them in), and accepts only approvals and rejections that bind the
// same digest.
func TestKeyPacketsBinding(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev1 := e.newUser("alice")
		dev2 := e.addDevice(dev1)
		rk := genKey(t, "recovery")
		e.extend(dev1, statement.ActionSetRecovery, rk.Public())
		lab := e.newParty("lab")

		// Sealed in another order than the server lists the keys.
		u := e.prepare(lab, dev1.user, []byte("three recipients"), envelope.Compat)
		u.body, u.digest = sealMsg(t, envelope.Compat, []byte("three recipients"), rk.Public(), dev2.key.Public(), dev1.key.Public())
		e.sign(lab, dev1.user, u)
		want := keyPacketsOf(u.body)

		// A submission whose key-packets-sha256 is not the body's.
		wrong := *u
		bad := want
		bad[0] ^= 1
		wrong.keyPackets = &bad
		e.sign(lab, dev1.user, &wrong)
		before := e.snap()
		resp, data := e.send(lab, dev1.user, &wrong)
		if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemBadStatement || !strings.Contains(p.Detail, "key-packets-sha256") {
			t.Fatalf("wrong key-packets-sha256: %s %q", p.Type, p.Detail)
		}
		e.unchanged(before)

		resp, data = e.send(lab, dev1.user, u)
		if resp.StatusCode != 201 {
			t.Fatalf("upload: %d %s", resp.StatusCode, data)
		}
		var rec api.Record
		json.Unmarshal(data, &rec)
		if rec.KeyPacketsSHA256 != hex.EncodeToString(want[:]) {
			t.Fatalf("record key_packets_sha256 %s", rec.KeyPacketsSHA256)
		}
		msg, err := envelope.Split(bytes.NewReader(u.body))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []*device{dev1, dev2} {
			det := e.findRequest(d, store.KindApproval, rec.ID)
			if len(det.KeyPackets) != 3 {
				t.Fatalf("%d key packets served", len(det.KeyPackets))
			}
			for i, kp := range msg.KeyPackets {
				if !bytes.Equal(det.KeyPackets[i], kp.Raw) {
					t.Fatalf("served key packet %d is not the message's packet %d", i, i)
				}
			}
			own, _ := envelope.ParseKeyPacket(det.KeyPacket)
			if own == nil || !own.For(d.key) || servedKeyPackets(det) != want {
				t.Fatal("the device's own packet or the served digest is wrong")
			}
		}
		det := e.findRequest(dev1, store.KindApproval, rec.ID)
		now := e.clock.now()
		for _, c := range []struct {
			path string
			stmt interface{ Marshal() ([]byte, error) }
		}{
			{api.PathDeviceApprove, func() *statement.Approval { a := approvalFor(det, dev1, now); a.KeyPackets = bad; return a }()},
			{api.PathDeviceReject, func() *statement.Rejection { r := rejectionFor(det, dev1, now); r.KeyPackets = bad; return r }()},
		} {
			p := e.refused("POST", api.Path(c.path, det.ID), dev1.token, signStmt(t, c.stmt, dev1.key), 422)
			if p.Type != api.ProblemBadStatement || !strings.Contains(p.Detail, "key-packets-sha256") {
				t.Fatalf("%s with a wrong key-packets-sha256: %s %q", c.path, p.Type, p.Detail)
			}
		}
		e.call("POST", api.Path(api.PathDeviceApprove, det.ID), dev1.token, signStmt(t, approvalFor(det, dev1, now), dev1.key), 200, nil)
		e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, &rec)
		ap, err := statement.ParseApproval([]byte(rec.DecisionStatement))
		if err != nil || ap.KeyPackets != want || rec.KeyPacketsSHA256 != hex.EncodeToString(want[:]) {
			t.Fatalf("approval %+v (%v)", ap, err)
		}
		// A submission with a v1 statement is refused by name.
		v1 := *u
		v1.stmt = []byte(strings.Replace(string(u.stmt), "keyholder-submission-v2", "keyholder-submission-v1", 1))
		// (statement.Sign refuses to sign it; the server parses before it verifies.)
		before = e.snap()
		resp, data = e.send(lab, dev1.user, &v1)
		if p := e.wantProblem(resp, data, 422); !strings.Contains(p.Detail, "v1") {
			t.Fatalf("v1 submission: %q", p.Detail)
		}
		e.unchanged(before)
	})
}

// TestKeyPacketSwapServed: the operator copies record X's device key
// packet onto record Y's row in record_key_packets. The server serves what
// is in the database, so the device sees packets whose digest is not the
// one its approval of Y bound (and can refuse to re-wrap); a device that
// approves a swapped pending record as served is refused by the server.
func TestKeyPacketSwapServed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev := e.newUser("alice")
		lab := e.newParty("lab")
		operator := e.newParty("operator")
		x, _ := e.submit(lab, dev.user, []byte("secret record X"))
		y, _ := e.submit(lab, dev.user, []byte("harmless record Y"))
		e.approve(dev, x.ID)
		e.approve(dev, y.ID)
		packetOf := func(recordID string) store.RecordKeyPacket {
			var kp store.RecordKeyPacket
			if err := store.First(e.st.DB(t.Context()), &kp, "record_id = ? AND device_id = ?", recordID, dev.id); err != nil {
				t.Fatal(err)
			}
			return kp
		}
		kx, ky := packetOf(x.ID), packetOf(y.ID)
		// Before the swap the served packets are the approved ones.
		var ar api.AccessResponse
		e.call("POST", api.Path(api.PathRecordAccess, y.ID), operator.token, api.AccessRequest{Purpose: "lunch"}, 202, &ar)
		det := e.findRequest(dev, store.KindAccess, y.ID)
		ap, err := statement.ParseApproval([]byte(det.ApprovalStatement))
		if err != nil || servedKeyPackets(det) != ap.KeyPackets || !bytes.Equal(det.KeyPacket, ky.Packet) {
			t.Fatalf("before the swap the served packets are not the approved ones (%v)", err)
		}
		// The operator swaps the row behind the server's back.
		if err := e.st.DB(t.Context()).Model(&store.RecordKeyPacket{}).Where("id = ?", ky.ID).Update("packet", kx.Packet).Error; err != nil {
			t.Fatal(err)
		}
		det = e.findRequest(dev, store.KindAccess, y.ID)
		if !bytes.Equal(det.KeyPacket, kx.Packet) || len(det.KeyPackets) != 1 || !bytes.Equal(det.KeyPackets[0], kx.Packet) {
			t.Fatal("the server does not serve what is in the database")
		}
		if servedKeyPackets(det) == ap.KeyPackets {
			t.Fatal("the swapped packets hash to the approved digest")
		}
		var yr api.Record
		e.call("GET", api.Path(api.PathRecord, y.ID), lab.token, nil, 200, &yr)
		if want := servedKeyPackets(det); yr.KeyPacketsSHA256 == hex.EncodeToString(want[:]) {
			t.Fatal("the record's digest matches the swapped packets")
		}

		// A pending record with a swapped packet: an approval of what is
		// served does not match the record.
		z, _ := e.submit(lab, dev.user, []byte("pending record Z"))
		kz := packetOf(z.ID)
		if err := e.st.DB(t.Context()).Model(&store.RecordKeyPacket{}).Where("id = ?", kz.ID).Update("packet", kx.Packet).Error; err != nil {
			t.Fatal(err)
		}
		zdet := e.findRequest(dev, store.KindApproval, z.ID)
		p := e.refused("POST", api.Path(api.PathDeviceApprove, zdet.ID), dev.token, signStmt(t, approvalFor(zdet, dev, e.clock.now()), dev.key), 422)
		if !strings.Contains(p.Detail, "key-packets-sha256") {
			t.Fatalf("approval of swapped packets: %q", p.Detail)
		}
	})
}
