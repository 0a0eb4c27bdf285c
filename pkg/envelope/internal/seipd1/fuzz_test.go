package seipd1

// The hand-written CFB earns its place by speed only, so it is held to
// go-crypto's on every input: the same ciphertext for the same key, prefix
// and contents; each opens what the other sealed; and both give the same
// verdict on any packet body.
//
//	go test -run '^$' -fuzz FuzzSEIPDv1Seal ./pkg/envelope/internal/seipd1/

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// fuzzKey makes an AES key of 16, 24 or 32 octets out of any input.
func fuzzKey(b []byte) ([]byte, packet.CipherFunction) {
	c := []packet.CipherFunction{packet.CipherAES128, packet.CipherAES192, packet.CipherAES256}[len(b)%3]
	key := make([]byte, c.KeySize())
	copy(key, b)
	return key, c
}

// fuzzBody returns the body of a SEIPDv1 packet after its version octet.
func fuzzBody(t *testing.T, pkt []byte) []byte {
	t.Helper()
	se, err := s1Parse(pkt)
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	if se.Version != 1 {
		t.Fatalf("version %d", se.Version)
	}
	body, err := io.ReadAll(se.Contents)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return body
}

// fuzzPacket frames body (after the version octet) as a SEIPD packet with
// a five-octet length.
func fuzzPacket(body []byte) []byte {
	pkt := []byte{0xC0 | 18, 0xFF, 0, 0, 0, 0, 1}
	binary.BigEndian.PutUint32(pkt[2:6], uint32(1+len(body)))
	return append(pkt, body...)
}

// FuzzSEIPDv1Seal seals contents with both implementations, with the same
// key and prefix: the packet bodies must be identical, the writer's digest
// must be the SHA-256 of the packet it wrote, and each must open the
// other's to the contents, in any write and read sizes.
func FuzzSEIPDv1Seal(f *testing.F) {
	f.Add([]byte("k"), []byte("0123456789abcdef"), []byte(""), uint16(0), uint16(64))
	f.Add(bytes.Repeat([]byte{7}, 32), []byte("prefix-prefix-16"), []byte("a literal packet"), uint16(3), uint16(45))
	f.Add(bytes.Repeat([]byte{1}, 24), make([]byte, 16), bytes.Repeat([]byte("x"), 511-18-22), uint16(1), uint16(2*mdcLen))
	f.Add(bytes.Repeat([]byte{9}, 16), []byte("ffffffffffffffff"), bytes.Repeat([]byte("y"), 3000), uint16(500), uint16(4096))
	f.Fuzz(func(t *testing.T, keySeed, prefix, contents []byte, step, bufSize uint16) {
		if len(prefix) < 16 {
			prefix = append(prefix, make([]byte, 16-len(prefix))...)
		}
		prefix = prefix[:16]
		key, c := fuzzKey(keySeed)

		// Ours, written in pieces of step octets into 512-octet chunks.
		var ours bytes.Buffer
		digest := sha256.New()
		w, err := newWriterRand(&ours, key, digest, s1ChunkLog, bytes.NewReader(prefix))
		if err != nil {
			t.Fatal(err)
		}
		n := max(int(step), 1)
		for p := contents; len(p) > 0; p = p[min(n, len(p)):] {
			if _, err := w.Write(p[:min(n, len(p))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if want := sha256.Sum256(ours.Bytes()); !bytes.Equal(digest.Sum(nil), want[:]) {
			t.Fatal("the digest is not the SHA-256 of the packet")
		}

		// go-crypto's, with the same prefix.
		var theirs bytes.Buffer
		gw, err := packet.SerializeSymmetricallyEncrypted(&theirs, c, false, packet.CipherSuite{}, key,
			&packet.Config{Rand: bytes.NewReader(prefix)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gw.Write(contents); err != nil {
			t.Fatal(err)
		}
		if err := gw.Close(); err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(fuzzBody(t, ours.Bytes()), fuzzBody(t, theirs.Bytes())) {
			t.Fatal("the packet bodies differ for the same key, prefix and contents")
		}
		got, err := s1OpenGoCrypto(key, ours.Bytes())
		if err != nil || !bytes.Equal(got, contents) {
			t.Fatalf("go-crypto opening ours: err=%v, equal=%v", err, bytes.Equal(got, contents))
		}
		bs := max(int(bufSize), 2*mdcLen)
		got, err = s1Open(key, theirs.Bytes(), bs)
		if err != nil || !bytes.Equal(got, contents) {
			t.Fatalf("opening go-crypto's: err=%v, equal=%v", err, bytes.Equal(got, contents))
		}
	})
}

// FuzzSEIPDv1Open opens any packet body with both implementations: both
// refuse it, or both accept it with the same plaintext. The seeds are
// valid packets, so that mutations reach the MDC and prefix checks.
func FuzzSEIPDv1Open(f *testing.F) {
	for i, size := range []int{0, 1, 100, 600} {
		key, c := fuzzKey(bytes.Repeat([]byte{byte(i)}, 16+8*i%24))
		var pkt bytes.Buffer
		w, err := packet.SerializeSymmetricallyEncrypted(&pkt, c, false, packet.CipherSuite{}, key, nil)
		if err != nil {
			f.Fatal(err)
		}
		w.Write(bytes.Repeat([]byte{byte(size)}, size))
		w.Close()
		se, err := s1Parse(pkt.Bytes())
		if err != nil {
			f.Fatal(err)
		}
		body, _ := io.ReadAll(se.Contents)
		f.Add(bytes.Repeat([]byte{byte(i)}, 16+8*i%24), body, uint16(64))
	}
	f.Fuzz(func(t *testing.T, keySeed, body []byte, bufSize uint16) {
		key, _ := fuzzKey(keySeed)
		pkt := fuzzPacket(body)
		want, werr := s1OpenGoCrypto(key, pkt)
		got, err := s1Open(key, pkt, max(int(bufSize), 2*mdcLen))
		switch {
		case (werr == nil) != (err == nil):
			t.Fatalf("go-crypto: %v; ours: %v", werr, err)
		case err == nil && !bytes.Equal(got, want):
			t.Fatal("both accept the packet but their plaintexts differ")
		}
	})
}
