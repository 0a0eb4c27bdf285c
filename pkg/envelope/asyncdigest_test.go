package envelope

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestAsyncDigesterReusesBuffers pins the fix for a slow open: the digester
// used to allocate a fresh buffer whenever its hasher lagged, which cost more
// in garbage collection and page faults than the hashing itself.
func TestAsyncDigesterReusesBuffers(t *testing.T) {
	a := NewAsyncDigester()
	chunk := bytes.Repeat([]byte{0x5a}, 48<<10) // a typical network read
	for range 4 * asyncDigestBuffers * asyncDigestChunk / len(chunk) {
		a.Write(chunk) // warm up: every buffer allocated once
	}
	allocs := testing.AllocsPerRun(200, func() { a.Write(chunk) })
	if allocs > 0 {
		t.Fatalf("Write allocates %.2f times per call after warm-up", allocs)
	}
	a.Digest()
}

// TestAsyncDigesterDigest: whatever the write sizes, the digest is the
// SHA-256 and length of the concatenation, also when Digest comes in the
// middle of a chunk.
func TestAsyncDigesterDigest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, total := range []int{0, 1, asyncDigestChunk - 1, asyncDigestChunk, asyncDigestChunk + 1, 3*asyncDigestChunk + 12345} {
		data := make([]byte, total)
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		a := NewAsyncDigester()
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(100<<10))
			if k, err := a.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("Write = %d, %v", k, err)
			}
			rest = rest[n:]
		}
		got := a.Digest()
		if got.SHA256 != sha256.Sum256(data) || got.Size != int64(total) {
			t.Fatalf("%d bytes: wrong digest (size %d)", total, got.Size)
		}
		if again := a.Digest(); again != got {
			t.Fatalf("second Digest differs")
		}
	}
}
