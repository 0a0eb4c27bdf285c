package envelope

// The SEIPDv1 code itself is tested in internal/seipd1; these tests run it
// through Seal and Open.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/envelope/internal/seipd1"
)

func s1Rand(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func s1Parse(pkt []byte) (*packet.SymmetricallyEncrypted, error) {
	p, err := packet.Read(bytes.NewReader(pkt))
	if err != nil {
		return nil, err
	}
	se, ok := p.(*packet.SymmetricallyEncrypted)
	if !ok {
		return nil, fmt.Errorf("parsed %T", p)
	}
	return se, nil
}

// TestSEIPDv1WrongKeyAndCipher checks what Open checks before handing a
// SEIPDv1 packet to the seipd1 package, and that it reads other
// implementations' AES key sizes.
func TestSEIPDv1WrongKeyAndCipher(t *testing.T) {
	key := s1Rand(32)
	var pkt bytes.Buffer
	w, err := seipd1.NewWriter(&pkt, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(s1Rand(1000))
	w.Close()
	se, _ := s1Parse(pkt.Bytes())
	r, err := newSEIPDv1Reader(se, packet.CipherAES256, s1Rand(32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("wrong key: %v", err)
	}
	se, _ = s1Parse(pkt.Bytes())
	if _, err := newSEIPDv1Reader(se, packet.CipherCAST5, key[:16]); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("CAST5: %v", err)
	}
	if _, err := newSEIPDv1Reader(se, packet.CipherAES128, key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("key length mismatch: %v", err)
	}
	// AES-128 and AES-192 session keys (other implementations' choice).
	for _, c := range []packet.CipherFunction{packet.CipherAES128, packet.CipherAES192} {
		k := s1Rand(c.KeySize())
		contents := s1Rand(777)
		var buf bytes.Buffer
		w, _ := packet.SerializeSymmetricallyEncrypted(&buf, c, false, packet.CipherSuite{}, k, nil)
		w.Write(contents)
		w.Close()
		se, _ := s1Parse(buf.Bytes())
		r, err := newSEIPDv1Reader(se, c, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || r.Close() != nil || !bytes.Equal(got, contents) {
			t.Fatalf("cipher %d: %v", c, err)
		}
	}
}

// TestSEIPDv1Envelope runs a compat record big enough to use the pipelines
// through Seal and Open, and through go-crypto's reader.
func TestSEIPDv1Envelope(t *testing.T) {
	device, err := GenerateKey("device")
	if err != nil {
		t.Fatal(err)
	}
	plaintext := s1Rand(3<<20 + 5)
	var buf bytes.Buffer
	w, err := Seal(&buf, Compat, device)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	msg := buf.Bytes()
	r, err := Open(bytes.NewReader(msg), device)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("open: %v", err)
	}
	m, err := Split(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	ek, err := unwrap(m.KeyPackets[0], Compat, device)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(m.Data)
	se, err := s1Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := se.Decrypt(ek.CipherFunc, ek.Key)
	if err != nil {
		t.Fatal(err)
	}
	lit, err := packet.Read(dec)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(lit.(*packet.LiteralData).Body)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("go-crypto open: %v", err)
	}
	if err := dec.Close(); err != nil {
		t.Fatalf("go-crypto MDC: %v", err)
	}
	// One flipped bit in the middle: Open's reader must fail.
	msg[len(msg)/2] ^= 4
	r, err = Open(bytes.NewReader(msg), device)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("flipped bit: %v", err)
	}
}
