package envelope

// Key packets as the statements bind them. KeyPacketsDigest is the
// key-packets-sha256 of submissions, approvals and rejections: the server
// must serve the device exactly the packets the party sealed. SessionKeyID
// is how a device recognizes a session key it has already approved, in
// whatever packet bytes it comes, so that one record's session key is never
// approved (and later re-wrapped) in another record's name.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"testing"
)

// hmacSessionKeyID computes a session key's id from its definition,
// HMAC-SHA256 keyed with the session key over "keyholder-session-key-id-v1",
// independently of rewrap.go.
func hmacSessionKeyID(sessionKey []byte) [32]byte {
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte("keyholder-session-key-id-v1"))
	var id [32]byte
	m.Sum(id[:0])
	return id
}

// TestKeyPacketsDigest: the digest Seal reports, the digest of the packets
// Split reads back, and the SHA-256 of every byte of the message before
// the data packet (what a party using other tools computes) are one value.
func TestKeyPacketsDigest(t *testing.T) {
	device, device2, recovery := namedKey("device"), namedKey("device2"), namedKey("recovery")
	for _, profile := range allProfiles {
		for _, to := range [][]*Key{{device}, {device, device2}, {device, device2, recovery}} {
			msg, w := sealWriter(t, profile, noise(1000), to...)
			m, data := splitParts(t, msg)
			if len(m.KeyPackets) != len(to) {
				t.Fatalf("%s: %d key packets for %d recipients", profile, len(m.KeyPackets), len(to))
			}
			got := KeyPacketsDigest(m.KeyPackets)
			if got != w.KeyPackets() {
				t.Errorf("%s, %d recipients: KeyPacketsDigest %x, SealWriter.KeyPackets %x", profile, len(to), got, w.KeyPackets())
			}
			if want := sha256.Sum256(msg[:len(msg)-len(data)]); got != want {
				t.Errorf("%s, %d recipients: KeyPacketsDigest %x, SHA-256 of the bytes before the data packet %x", profile, len(to), got, want)
			}
		}
	}
}

// TestKeyPacketsDigestBindsPackets: whatever a server serves instead of
// the key packets the party sealed has another digest, even where the
// device could still open the record with it.
func TestKeyPacketsDigestBindsPackets(t *testing.T) {
	device, device2, recovery := namedKey("device"), namedKey("device2"), namedKey("recovery")
	for _, profile := range allProfiles {
		msg, w := sealWriter(t, profile, []byte("the record"), device, device2, recovery)
		m, data := splitParts(t, msg)
		other, _ := seal(t, profile, []byte("another record"), device, device2, recovery)
		mo, _ := splitParts(t, other)
		kp, okp := m.KeyPackets, mo.KeyPackets
		rewrapped, err := Rewrap(kp[0], profile, device, device.Public())
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := unframe(t, kp[0].Raw)
		for _, c := range []struct {
			name   string
			served [][]byte
			opens  bool // the device still opens the record
		}{
			{"only the device's packet", [][]byte{kp[0].Raw}, true},
			{"recovery packet dropped", [][]byte{kp[0].Raw, kp[1].Raw}, true},
			{"reordered", [][]byte{kp[1].Raw, kp[0].Raw, kp[2].Raw}, true},
			{"a packet twice", [][]byte{kp[0].Raw, kp[0].Raw, kp[1].Raw, kp[2].Raw}, true},
			{"a packet added from another record", [][]byte{kp[0].Raw, kp[1].Raw, kp[2].Raw, okp[2].Raw}, true},
			{"device's packet re-encrypted", [][]byte{rewrapped, kp[1].Raw, kp[2].Raw}, true},
			{"device's packet re-framed", [][]byte{frameOld(tagPKESK, body, 2), kp[1].Raw, kp[2].Raw}, true},
			{"device's packet from another record", [][]byte{okp[0].Raw, kp[1].Raw, kp[2].Raw}, false},
		} {
			served := concat(append(c.served, data)...)
			ms, _ := splitParts(t, served)
			if d := KeyPacketsDigest(ms.KeyPackets); d == w.KeyPackets() {
				t.Errorf("%s, %s: the digest did not change", profile, c.name)
			}
			if _, err := openAll(served, device); c.opens && err != nil {
				t.Errorf("%s, %s: the device does not open it (%v); the attack needs no digest to fail", profile, c.name, err)
			} else if !c.opens && !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s, %s: open: %v, want ErrIntegrity", profile, c.name, err)
			}
		}
	}
}

// TestSessionKeyID: every recipient of a message computes the same id from
// its own key packet, the id Seal reports; it is the HMAC of the session
// key and not the key; another message has another id; a key the packet is
// not for gives none (TestWrongKey, TestLockedKey and TestProfileMismatch
// try the other wrong keys).
func TestSessionKeyID(t *testing.T) {
	device, device2, recovery := namedKey("device"), namedKey("device2"), namedKey("recovery")
	for _, profile := range allProfiles {
		keys := []*Key{device, device2, recovery}
		msg, w := sealWriter(t, profile, []byte("one record"), keys...)
		m, _ := splitParts(t, msg)
		if w.SessionKeyID() == ([32]byte{}) {
			t.Fatalf("%s: SealWriter.SessionKeyID is zero", profile)
		}
		for i, k := range keys {
			id, err := SessionKeyID(m.KeyPackets[i], profile, k)
			if err != nil || id != w.SessionKeyID() {
				t.Errorf("%s: recipient %d: SessionKeyID %x, %v; Seal reported %x", profile, i, id, err, w.SessionKeyID())
			}
		}
		ek, err := unwrap(m.KeyPackets[0], profile, device)
		if err != nil {
			t.Fatal(err)
		}
		if id := w.SessionKeyID(); id != hmacSessionKeyID(ek.Key) || bytes.Equal(id[:], ek.Key) {
			t.Errorf("%s: id %x is not HMAC-SHA256(session key, label)", profile, id)
		}
		clear(ek.Key)

		msg2, w2 := sealWriter(t, profile, []byte("one record"), keys...)
		m2, _ := splitParts(t, msg2)
		if w2.SessionKeyID() == w.SessionKeyID() {
			t.Errorf("%s: two messages have the same session key id", profile)
		}
		if id, err := SessionKeyID(m2.KeyPackets[1], profile, device2); err != nil || id != w2.SessionKeyID() {
			t.Errorf("%s: second message: %x, %v; want %x", profile, id, err, w2.SessionKeyID())
		}

		// device2 holds a packet of this message, but not this one.
		if id, err := SessionKeyID(m.KeyPackets[0], profile, device2); !errors.Is(err, ErrNoMatchingKey) || id != ([32]byte{}) {
			t.Errorf("%s: device2 on device's packet: %x, %v; want no id and ErrNoMatchingKey", profile, id, err)
		}
	}
}

// TestSessionKeyIDTransplant: record Y is submitted with a key packet for
// the device taken from record X, which the device already approved. The
// device never sees Y's body, and Y's submitter can sign a submission that
// binds exactly these key packets; but the session key the device would
// approve and later re-wrap in Y's name is X's, and its id says so however
// the packet is carried: copied byte for byte, re-framed, or re-encrypted
// by someone who knows X's session key (X's submitter, or a party X was
// opened to).
func TestSessionKeyIDTransplant(t *testing.T) {
	device := namedKey("device")
	for _, profile := range allProfiles {
		x, wx := sealWriter(t, profile, []byte("record X"), device)
		y, wy := sealWriter(t, profile, []byte("record Y"), device)
		mx, _ := splitParts(t, x)
		my, dataY := splitParts(t, y)
		kpX := mx.KeyPackets[0]
		_, body, _ := unframe(t, kpX.Raw)
		rewrapped, err := Rewrap(kpX, profile, device, device.Public())
		if err != nil {
			t.Fatal(err)
		}
		// What the device remembers of the records it approved.
		approved := map[[32]byte]string{wx.SessionKeyID(): "X"}
		if id, err := SessionKeyID(my.KeyPackets[0], profile, device); err != nil || approved[id] != "" || id != wy.SessionKeyID() {
			t.Fatalf("%s: Y's own packet: %x, %v", profile, id, err)
		}
		for _, c := range []struct {
			name string
			kp   []byte
		}{
			{"copied byte for byte", kpX.Raw},
			{"re-framed", frameOld(tagPKESK, body, 2)},
			{"re-encrypted to the device", rewrapped},
		} {
			transplanted := concat(c.kp, dataY)
			m, _ := splitParts(t, transplanted)
			if bytes.Equal(c.kp, kpX.Raw) && KeyPacketsDigest(m.KeyPackets) != wx.KeyPackets() {
				t.Errorf("%s, %s: the copied packet has another digest", profile, c.name)
			}
			id, err := SessionKeyID(m.KeyPackets[0], profile, device)
			if err != nil {
				t.Fatalf("%s, %s: %v", profile, c.name, err)
			}
			if approved[id] != "X" || id == wy.SessionKeyID() {
				t.Errorf("%s, %s: id %x is not X's %x", profile, c.name, id, wx.SessionKeyID())
			}
			if _, err := openAll(transplanted, device); !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s, %s: Y opened with X's session key: %v, want ErrIntegrity", profile, c.name, err)
			}
		}
	}
}
