package envelope

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

func mustKey(t testing.TB, name string) *Key {
	t.Helper()
	k, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func seal(t testing.TB, profile Profile, plaintext []byte, to ...*Key) ([]byte, DataDigest) {
	t.Helper()
	msg, w := sealWriter(t, profile, plaintext, to...)
	return msg, w.Digest()
}

// sealWriter is seal, returning the closed SealWriter for what it reports
// about the message (Digest, KeyPackets, SessionKeyID).
func sealWriter(t testing.TB, profile Profile, plaintext []byte, to ...*Key) ([]byte, *SealWriter) {
	t.Helper()
	var buf bytes.Buffer
	w, err := Seal(&buf, profile, to...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w
}

func TestSealRewrapOpen(t *testing.T) {
	device := mustKey(t, "device")
	party := mustKey(t, "party")
	for _, profile := range []Profile{Compat, Modern} {
		for _, size := range []int{0, 1, 4096, 3<<20 + 17} {
			plaintext := make([]byte, size)
			rand.Read(plaintext)
			msg, digest := seal(t, profile, plaintext, device)
			m, err := Split(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("%s/%d: split: %v", profile, size, err)
			}
			if m.Profile() != profile || len(m.KeyPackets) != 1 {
				t.Fatalf("%s: split gave profile %s with %d key packets", profile, m.Profile(), len(m.KeyPackets))
			}
			d := NewDigester()
			if _, err := io.Copy(d, m.Data); err != nil {
				t.Fatal(err)
			}
			if d.Digest() != digest {
				t.Fatalf("%s: digest of split data %x/%d differs from seal's %x/%d", profile, d.Digest().SHA256, d.Digest().Size, digest.SHA256, digest.Size)
			}
			if int64(len(msg))-int64(len(m.KeyPackets[0].Raw)) != digest.Size {
				t.Fatalf("data packet size mismatch")
			}
			pkesk, err := Rewrap(m.KeyPackets[0], profile, device, party.Public())
			if err != nil {
				t.Fatalf("%s: rewrap: %v", profile, err)
			}
			party2 := append(pkesk, msg[len(m.KeyPackets[0].Raw):]...)
			r, err := Open(bytes.NewReader(party2), party)
			if err != nil {
				t.Fatalf("%s/%d: open: %v", profile, size, err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("%s/%d: read: %v", profile, size, err)
			}
			if !bytes.Equal(got, plaintext) {
				t.Fatalf("%s/%d: plaintext differs", profile, size)
			}
			if _, err := Open(bytes.NewReader(party2), device); !errors.Is(err, ErrNoMatchingKey) {
				t.Fatalf("%s: device opened the party's message: %v", profile, err)
			}
		}
	}
}
