package seipd1

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The tests use 512-octet chunks (the smallest partial body length a first
// chunk may have) so that many chunk boundaries are cheap to reach.
const s1ChunkLog = 9

func s1Key(t testing.TB) []byte {
	key := make([]byte, 32)
	rand.Read(key)
	return key
}

func s1Rand(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// s1Seal writes contents through our writer in pieces of at most step
// octets (all at once if step is 0), and checks that the writer's digest
// saw exactly the packet's octets.
func s1Seal(t testing.TB, key, contents []byte, chunkLog int, step int) []byte {
	t.Helper()
	var buf bytes.Buffer
	digest := sha256.New()
	w, err := newWriterSize(&buf, key, digest, chunkLog)
	if err != nil {
		t.Fatal(err)
	}
	if step == 0 {
		step = len(contents) + 1
	}
	for p := contents; len(p) > 0; {
		n := min(len(p), step)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(buf.Bytes()); !bytes.Equal(digest.Sum(nil), want[:]) {
		t.Fatalf("%d octets in pieces of %d: the digest is not the SHA-256 of the packet", len(contents), step)
	}
	return buf.Bytes()
}

// s1SealGoCrypto writes contents through go-crypto's SEIPDv1 writer.
func s1SealGoCrypto(t testing.TB, key, contents []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := packet.SerializeSymmetricallyEncrypted(&buf, packet.CipherAES256, false, packet.CipherSuite{}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(contents); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
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

// s1OpenGoCrypto decrypts pkt with go-crypto's reader, with AES of the
// key's size.
func s1OpenGoCrypto(key, pkt []byte) ([]byte, error) {
	c := map[int]packet.CipherFunction{16: packet.CipherAES128, 24: packet.CipherAES192, 32: packet.CipherAES256}[len(key)]
	se, err := s1Parse(pkt)
	if err != nil {
		return nil, err
	}
	r, err := se.Decrypt(c, key)
	if err != nil {
		return nil, err
	}
	got, err := io.ReadAll(r)
	if err != nil {
		return got, err
	}
	return got, r.Close()
}

// s1Open decrypts pkt with our reader and reports the first error of
// parsing, Read or Close.
func s1Open(key, pkt []byte, bufSize int) ([]byte, error) {
	se, err := s1Parse(pkt)
	if err != nil {
		return nil, err
	}
	if se.Version != 1 {
		return nil, fmt.Errorf("version %d", se.Version)
	}
	r, err := newReaderSize(se.Contents, key, bufSize)
	if err != nil {
		return nil, err
	}
	got, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return got, err
}

// s1Sizes are content lengths around the first chunk boundaries
// for 2^s1ChunkLog chunks: the first chunk holds 511 octets of
// prefix||contents, the next ones 512.
func s1Sizes() []int {
	sizes := []int{0, 1, 2, 3, 4, 15, 16, 17, 21, 22, 23, 31, 32, 33, 100}
	first := 1<<s1ChunkLog - 1 - seipd1PrefixLen
	for _, b := range []int{first, first + 1<<s1ChunkLog, first + 2<<s1ChunkLog} {
		for d := -mdcLen - 1; d <= 1; d++ {
			sizes = append(sizes, b+d)
		}
	}
	return append(sizes, 5000, 12345)
}

func TestSEIPDv1RoundTripInterop(t *testing.T) {
	key := s1Key(t)
	for _, size := range s1Sizes() {
		for _, step := range []int{0, 1, 7, 64, 1000} {
			contents := s1Rand(size)
			name := fmt.Sprintf("size=%d/step=%d", size, step)

			// Ours → go-crypto and ours.
			pkt := s1Seal(t, key, contents, s1ChunkLog, step)
			got, err := s1OpenGoCrypto(key, pkt)
			if err != nil || !bytes.Equal(got, contents) {
				t.Fatalf("%s: go-crypto opening ours: err=%v equal=%v", name, err, bytes.Equal(got, contents))
			}
			for _, bs := range []int{2 * mdcLen, 45, 64, 100, 4096} {
				got, err := s1Open(key, pkt, bs)
				if err != nil || !bytes.Equal(got, contents) {
					t.Fatalf("%s/buf=%d: opening ours: err=%v equal=%v", name, bs, err, bytes.Equal(got, contents))
				}
			}

			// go-crypto → ours.
			pkt = s1SealGoCrypto(t, key, contents)
			for _, bs := range []int{2 * mdcLen, 61, 1 << 18} {
				got, err := s1Open(key, pkt, bs)
				if err != nil || !bytes.Equal(got, contents) {
					t.Fatalf("%s/buf=%d: opening go-crypto's: err=%v equal=%v", name, bs, err, bytes.Equal(got, contents))
				}
			}
		}
	}
}

// TestSEIPDv1Framing checks the packet layout: tag 18 in a new-format
// header, partial body chunks of the chosen power of two, version 1.
func TestSEIPDv1Framing(t *testing.T) {
	key := s1Key(t)
	for _, size := range []int{0, 400, 493, 494, 3000} {
		pkt := s1Seal(t, key, s1Rand(size), s1ChunkLog, 7)
		if pkt[0] != 0xD2 {
			t.Fatalf("size %d: tag octet %#x", size, pkt[0])
		}
		body, chunks := 0, 0
		rest := pkt[1:]
		for {
			l0 := rest[0]
			if l0 >= 224 && l0 < 255 {
				if l0 != 224+s1ChunkLog {
					t.Fatalf("size %d: partial length octet %#x", size, l0)
				}
				if chunks == 0 && rest[1] != 1 {
					t.Fatalf("size %d: version %d", size, rest[1])
				}
				body += 1 << s1ChunkLog
				rest = rest[1+1<<s1ChunkLog:]
				chunks++
				continue
			}
			var n int
			switch {
			case l0 < 192:
				n, rest = int(l0), rest[1:]
			case l0 < 224:
				n, rest = (int(l0)-192)<<8+int(rest[1])+192, rest[2:]
			default:
				n, rest = int(rest[1])<<24|int(rest[2])<<16|int(rest[3])<<8|int(rest[4]), rest[5:]
			}
			if len(rest) != n {
				t.Fatalf("size %d: final chunk says %d octets, %d remain", size, n, len(rest))
			}
			body += n
			break
		}
		if want := 1 + seipd1PrefixLen + size + mdcLen; body != want {
			t.Fatalf("size %d: body %d octets, want %d", size, body, want)
		}
	}
}

// TestSEIPDv1CFB checks the CFB engine against crypto/cipher's CFB on
// random lengths (most not a multiple of 16) written in random pieces, in
// single octets and whole: encrypting with and without the plaintext hash
// and the ciphertext digest, in place and not, and decrypting in place,
// not, and while hashing part of each piece.
func TestSEIPDv1CFB(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	cuts := map[string]func(n int) []int{
		"random": func(n int) []int {
			var p []int
			for n > 0 {
				k := rng.IntN(40)
				if rng.IntN(4) == 0 {
					k = rng.IntN(5000)
				}
				k = min(k, n)
				p, n = append(p, k), n-k
			}
			return p
		},
		"octets": func(n int) []int {
			p := make([]int, n)
			for i := range p {
				p[i] = 1
			}
			return p
		},
		"whole": func(n int) []int { return []int{n} },
	}
	for _, keyLen := range []int{16, 24, 32} {
		block, err := aes.NewCipher(s1Rand(keyLen))
		if err != nil {
			t.Fatal(err)
		}
		sizes := []int{0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129}
		for range 6 {
			sizes = append(sizes, rng.IntN(20000))
		}
		for _, size := range sizes {
			plain := s1Rand(size)
			want := make([]byte, size)
			//lint:ignore SA1019 the reference implementation for this test.
			cipher.NewCFBEncrypter(block, make([]byte, aes.BlockSize)).XORKeyStream(want, plain)
			for cutName, cut := range cuts {
				name := fmt.Sprintf("AES-%d/size=%d/%s", keyLen*8, size, cutName)
				pieces := cut(size)
				s1CheckEncrypt(t, name, block, plain, want, pieces)
				s1CheckDecrypt(t, name, block, plain, want, pieces, rng)
			}
		}
	}
}

// s1CheckEncrypt encrypts plain in pieces, each way the writer may, and
// compares with want.
func s1CheckEncrypt(t *testing.T, name string, block cipher.Block, plain, want []byte, pieces []int) {
	t.Helper()
	for _, hashed := range []bool{false, true} {
		for _, digested := range []bool{false, true} {
			for _, inPlace := range []bool{false, true} {
				var h, d hash.Hash
				if hashed {
					h = sha1.New()
				}
				if digested {
					d = sha256.New()
				}
				got := make([]byte, len(plain))
				src := plain
				if inPlace {
					copy(got, plain)
					src = got
				}
				c := newCFB(block)
				off := 0
				for _, n := range pieces {
					c.encrypt(got[off:off+n], src[off:off+n], h, d)
					off += n
				}
				what := fmt.Sprintf("%s/hash=%v/digest=%v/in-place=%v", name, hashed, digested, inPlace)
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: encryption differs from crypto/cipher CFB", what)
				}
				if h != nil && !bytes.Equal(h.Sum(nil), s1SHA1(plain)) {
					t.Fatalf("%s: hash of the plaintext differs", what)
				}
				if d != nil {
					if sum := sha256.Sum256(want); !bytes.Equal(d.Sum(nil), sum[:]) {
						t.Fatalf("%s: digest of the ciphertext differs", what)
					}
				}
			}
		}
	}
}

// s1CheckDecrypt decrypts ciphertext in pieces, in place and not, and with
// decryptHash hashing a random part of each piece; all must give plain.
func s1CheckDecrypt(t *testing.T, name string, block cipher.Block, plain, ciphertext []byte, pieces []int, rng *mrand.Rand) {
	t.Helper()
	got := make([]byte, len(ciphertext))
	c := newCFB(block)
	off := 0
	for _, n := range pieces {
		c.decrypt(got[off:off+n], ciphertext[off:off+n])
		off += n
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("%s: decryption differs", name)
	}
	copy(got, ciphertext)
	c, off = newCFB(block), 0
	for _, n := range pieces {
		c.decrypt(got[off:off+n], got[off:off+n])
		off += n
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("%s: in-place decryption differs", name)
	}
	copy(got, ciphertext)
	c, off = newCFB(block), 0
	h, wantH := sha1.New(), sha1.New()
	for _, n := range pieces {
		end := rng.IntN(n + 1)
		if rng.IntN(2) == 0 {
			end = n
		}
		c.decryptHash(got[off:off+n], h, end)
		wantH.Write(plain[off : off+end])
		off += n
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("%s: decryptHash decrypts wrongly", name)
	}
	if !bytes.Equal(h.Sum(nil), wantH.Sum(nil)) {
		t.Fatalf("%s: decryptHash hashes wrongly", name)
	}
}

// TestSEIPDv1BitFlips flips every bit of a three-chunk packet, framing
// included: each must make parsing, a Read or Close fail.
func TestSEIPDv1BitFlips(t *testing.T) {
	key := s1Key(t)
	contents := s1Rand(1100)
	pkt := s1Seal(t, key, contents, s1ChunkLog, 0)
	bad := make([]byte, len(pkt))
	for i := range pkt {
		for bit := range 8 {
			copy(bad, pkt)
			bad[i] ^= 1 << bit
			if _, err := s1Open(key, bad, []int{64, 200}[(i+bit)%2]); err == nil {
				t.Fatalf("flipping bit %d of octet %d went unnoticed", bit, i)
			}
		}
	}
}

// TestSEIPDv1FlipReportedAtRead checks that a damaged packet fails the Read
// that reaches its end, not only Close, and that Close fails too even when
// called before the end.
func TestSEIPDv1FlipReportedAtRead(t *testing.T) {
	key := s1Key(t)
	contents := s1Rand(300 << 10)
	pkt := s1Seal(t, key, contents, seipd1ChunkLog, 0)
	for _, at := range []int{40, len(pkt) / 2, len(pkt) - 30, len(pkt) - 1} {
		bad := bytes.Clone(pkt)
		bad[at] ^= 0x10
		se, err := s1Parse(bad)
		if err != nil {
			t.Fatal(err)
		}
		r, err := newReaderSize(se.Contents, key, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		if !errors.Is(err, ErrIntegrity) {
			t.Fatalf("flip at %d: ReadAll returned %v, want ErrIntegrity", at, err)
		}
		if err := r.Close(); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("flip at %d: Close returned %v", at, err)
		}

		// Close before reading everything reads the rest and checks.
		se, _ = s1Parse(bad)
		r, _ = newReaderSize(se.Contents, key, 1<<16)
		io.ReadFull(r, make([]byte, 100))
		if err := r.Close(); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("flip at %d: early Close returned %v", at, err)
		}
	}
	// And an intact packet closed early verifies.
	{
		se, _ := s1Parse(pkt)
		r, _ := newReaderSize(se.Contents, key, 1<<16)
		io.ReadFull(r, make([]byte, 100))
		if err := r.Close(); err != nil {
			t.Fatalf("early Close of an intact packet: %v", err)
		}
		if _, err := r.Read(make([]byte, 10)); err == nil {
			t.Fatalf("Read after Close succeeded")
		}
	}
}

// TestSEIPDv1Truncated cuts the packet at every octet, and re-frames
// shortened bodies as complete packets: all must fail.
func TestSEIPDv1Truncated(t *testing.T) {
	key := s1Key(t)
	contents := s1Rand(1100)
	pkt := s1Seal(t, key, contents, s1ChunkLog, 0)
	for n := 0; n < len(pkt); n++ {
		if _, err := s1Open(key, pkt[:n], []int{64, 200}[n%2]); err == nil {
			t.Fatalf("packet cut to %d of %d octets opened", n, len(pkt))
		}
	}
	// A well-framed packet whose body lost its end (the MDC or more).
	small := s1Seal(t, key, s1Rand(100), s1ChunkLog, 0)
	body := small[2:] // tag, one-octet length, then the body
	for cut := 1; cut < len(body)-1; cut++ {
		short := append([]byte{0xD2, byte(len(body) - cut)}, body[:len(body)-cut]...)
		if _, err := s1Open(key, short, 64); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("body shortened by %d: %v", cut, err)
		}
	}
}

// s1Packet encrypts S (prefix, contents and whatever trailer the test
// wants) into a single-chunk SEIPDv1 packet.
func s1Packet(t *testing.T, key, s []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1+len(s))
	body[0] = 1
	newCFB(block).encrypt(body[1:], s, nil, nil)
	var pkt bytes.Buffer
	pkt.WriteByte(0xD2)
	pkt.Write([]byte{0xFF, byte(len(body) >> 24), byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))})
	pkt.Write(body)
	return pkt.Bytes()
}

func TestSEIPDv1BadMDC(t *testing.T) {
	key := s1Key(t)
	prefix := s1Rand(16)
	prefix = append(prefix, prefix[14], prefix[15])
	contents := s1Rand(200)
	mdc := func(tag, length byte) []byte {
		h := sha1.New()
		h.Write(prefix)
		h.Write(contents)
		h.Write([]byte{tag, length})
		return h.Sum([]byte{tag, length})
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	// The reference: a hand-made packet that opens.
	good := s1Packet(t, key, cat(prefix, contents, mdc(0xD3, 0x14)))
	if got, err := s1Open(key, good, 64); err != nil || !bytes.Equal(got, contents) {
		t.Fatalf("hand-made packet: %v", err)
	}
	if got, err := s1OpenGoCrypto(key, good); err != nil || !bytes.Equal(got, contents) {
		t.Fatalf("hand-made packet, go-crypto: %v", err)
	}
	wrongHash := mdc(0xD3, 0x14)
	wrongHash[5] ^= 1
	cases := map[string][]byte{
		"no MDC":              cat(prefix, contents),
		"MDC tag 0xD4":        cat(prefix, contents, mdc(0xD4, 0x14)),
		"MDC old-format tag":  cat(prefix, contents, mdc(0x80|19<<2, 0x14)),
		"MDC length 0x15":     cat(prefix, contents, mdc(0xD3, 0x15)),
		"wrong hash":          cat(prefix, contents, wrongHash),
		"hash without header": cat(prefix, contents, []byte{0xD3, 0x14}, s1SHA1(prefix, contents)),
		"MDC then data":       cat(prefix, contents, mdc(0xD3, 0x14), []byte{0}),
		"prefix only":         cat(prefix),
		"prefix and MDC only": cat(prefix, []byte{0xD3, 0x14}, s1SHA1(prefix[:10])),
		"39 octets":           s1Rand(39),
		"empty":               nil,
	}
	for name, s := range cases {
		for _, bs := range []int{64, 4096} {
			_, err := s1Open(key, s1Packet(t, key, s), bs)
			if !errors.Is(err, ErrIntegrity) {
				t.Errorf("%s/buf=%d: got %v, want ErrIntegrity", name, bs, err)
			}
		}
	}
	// The shortest valid S: prefix and MDC around empty contents.
	contents = nil
	if got, err := s1Open(key, s1Packet(t, key, cat(prefix, mdc(0xD3, 0x14))), 64); err != nil || len(got) != 0 {
		t.Fatalf("empty contents: %v", err)
	}
}

func s1SHA1(parts ...[]byte) []byte {
	h := sha1.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

func TestSEIPDv1WrongKey(t *testing.T) {
	key := s1Key(t)
	pkt := s1Seal(t, key, s1Rand(1000), s1ChunkLog, 0)
	if _, err := s1Open(s1Key(t), pkt, 64); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("wrong key: %v", err)
	}
}

type s1FailingWriter struct{ after int }

func (f *s1FailingWriter) Write(p []byte) (int, error) {
	if f.after < len(p) {
		return 0, errors.New("disk full")
	}
	f.after -= len(p)
	return len(p), nil
}

func TestSEIPDv1WriteError(t *testing.T) {
	key := s1Key(t)
	for _, after := range []int{0, 600, 5000} {
		w, err := newWriterSize(&s1FailingWriter{after: after}, key, nil, s1ChunkLog)
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for range 40 {
			if _, werr = w.Write(make([]byte, 300)); werr != nil {
				break
			}
		}
		cerr := w.Close()
		if werr == nil && cerr == nil {
			t.Fatalf("after=%d: no error reported", after)
		}
		if cerr == nil {
			t.Fatalf("after=%d: Close after a failed Write returned nil", after)
		}
	}
}

// s1ShortWriter takes the first half of each write and reports no error,
// against io.Writer's contract.
type s1ShortWriter struct{ bytes.Buffer }

func (s *s1ShortWriter) Write(p []byte) (int, error) { return s.Buffer.Write(p[:len(p)/2]) }

// TestSEIPDv1ShortWrite checks that a destination that takes fewer octets
// than it was given, without an error, fails the packet: the digest has
// already counted the octets, so a record sealed this way would otherwise
// carry a digest of bytes that were never written.
func TestSEIPDv1ShortWrite(t *testing.T) {
	key := s1Key(t)
	for _, size := range []int{0, 100, 2000} {
		dst := &s1ShortWriter{}
		w, err := newWriterSize(dst, key, sha256.New(), s1ChunkLog)
		if err != nil {
			t.Fatal(err)
		}
		_, werr := w.Write(make([]byte, size))
		cerr := w.Close()
		if !errors.Is(werr, io.ErrShortWrite) && !errors.Is(cerr, io.ErrShortWrite) {
			t.Fatalf("size %d: Write returned %v, Close %v; want io.ErrShortWrite", size, werr, cerr)
		}
	}
}
