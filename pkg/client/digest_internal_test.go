package client

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// TestAsyncDigesterReusesBuffers pins the fix for a slow open: the digester
// used to allocate a fresh buffer whenever its hasher lagged, which cost more
// in garbage collection and page faults than the hashing itself.
func TestAsyncDigesterReusesBuffers(t *testing.T) {
	a := newAsyncDigester()
	chunk := bytes.Repeat([]byte{0x5a}, 256<<10)
	for range 2 * digestBuffers { // warm up: every buffer allocated once
		a.Write(chunk)
	}
	allocs := testing.AllocsPerRun(50, func() { a.Write(chunk) })
	if allocs > 0 {
		t.Fatalf("Write allocates %.1f times per call after warm-up", allocs)
	}
	got := a.finish()
	n := 2*digestBuffers + 51
	want := sha256.Sum256(bytes.Repeat(chunk, n))
	if got.SHA256 != want || got.Size != int64(n*len(chunk)) {
		t.Fatalf("digest of %d chunks is wrong: size %d", n, got.Size)
	}
}
