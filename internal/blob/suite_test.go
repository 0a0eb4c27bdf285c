package blob_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/blob/s3test"
)

// store is what the suite needs of a driver beyond blob.Store.
type store interface {
	blob.Store
	blob.TempCleaner
	Count() (blobs, temps int, err error)
}

// partSize is the S3 part size in the suite: the smallest S3 allows, so
// that a few MiB exercise multipart uploads.
const partSize = blob.MinPartSize

// drivers returns the stores under test: the filesystem always, S3 when
// a test server is there (s3test skips that subtest otherwise).
var drivers = []struct {
	name string
	open func(t *testing.T) store
}{
	{"fs", func(t *testing.T) store {
		s, err := blob.NewFS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"s3", func(t *testing.T) store {
		return s3test.Store(t, "records/", blob.S3Options{PartSize: partSize, Parallel: 2})
	}},
}

// data returns n reproducible pseudo-random bytes and their key.
func data(n int, seed byte) ([]byte, string) {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// write streams b into a new temporary blob in pieces of 1 MiB (as the
// upload handler does).
func write(t *testing.T, s blob.Store, b []byte) blob.Temp {
	t.Helper()
	tmp, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 0 {
		n := min(len(b), 1<<20)
		if _, err := tmp.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	return tmp
}

func wantCount(t *testing.T, s store, blobs, temps int) {
	t.Helper()
	b, tm, err := s.Count()
	if err != nil {
		t.Fatal(err)
	}
	if b != blobs || tm != temps {
		t.Fatalf("%d blobs and %d temporaries, want %d and %d", b, tm, blobs, temps)
	}
}

func readAll(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	f, err := s.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != int64(len(got)) {
		t.Fatalf("Size %d, read %d bytes", f.Size(), len(got))
	}
	return got
}

// sizes: empty, smaller than a part (one PUT on S3), several parts with
// a short last one (multipart).
var sizes = []int{0, 1000, 3*partSize + 12345}

// TestStores runs every behaviour against every driver.
func TestStores(t *testing.T) {
	behaviours := []struct {
		name string
		run  func(t *testing.T, s store)
	}{
		{"commit then read", testCommit},
		{"invisible until commit", testInvisibleUntilCommit},
		{"abort leaves nothing", testAbort},
		{"ranges", testRanges},
		{"delete", testDelete},
		{"sweep orphans", testSweep},
		{"bad keys", testBadKeys},
		{"large streaming, bounded memory", testLarge},
	}
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			for _, b := range behaviours {
				t.Run(b.name, func(t *testing.T) { b.run(t, d.open(t)) })
			}
		})
	}
}

func testCommit(t *testing.T, s store) {
	for i, n := range sizes {
		b, key := data(n, byte(i))
		tmp := write(t, s, b)
		if err := tmp.Commit(key); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if err := tmp.Abort(); err != nil {
			t.Fatalf("Abort after Commit: %v", err)
		}
		if _, err := tmp.Write([]byte("x")); err == nil {
			t.Fatal("a write after Commit succeeded")
		}
		if got := readAll(t, s, key); !bytes.Equal(got, b) {
			t.Fatalf("%d bytes: read back %d different bytes", n, len(got))
		}
		// The same bytes again (a record rejected and uploaded anew).
		if err := write(t, s, b).Commit(key); err != nil {
			t.Fatalf("committing existing bytes again: %v", err)
		}
	}
	wantCount(t, s, len(sizes), 0)
}

func testInvisibleUntilCommit(t *testing.T, s store) {
	for i, n := range sizes[1:] {
		b, key := data(n, byte(10+i))
		tmp := write(t, s, b)
		if err := tmp.Sync(); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Exists(key); err != nil || ok {
			t.Fatalf("%d bytes, written and synced: Exists = %v, %v", n, ok, err)
		}
		if _, err := s.Open(key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("%d bytes before Commit: Open = %v, want ErrNotFound", n, err)
		}
		if err := tmp.Commit(key); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Exists(key); err != nil || !ok {
			t.Fatalf("%d bytes after Commit: Exists = %v, %v", n, ok, err)
		}
	}
	wantCount(t, s, len(sizes)-1, 0)
}

func testAbort(t *testing.T, s store) {
	for i, n := range sizes {
		b, key := data(n, byte(20+i))
		tmp := write(t, s, b)
		if i == 2 {
			if err := tmp.Sync(); err != nil { // a completed temporary object
				t.Fatal(err)
			}
		}
		if err := tmp.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := tmp.Abort(); err != nil {
			t.Fatalf("second Abort: %v", err)
		}
		if err := tmp.Commit(key); err == nil {
			t.Fatal("Commit after Abort succeeded")
		}
		if ok, _ := s.Exists(key); ok {
			t.Fatal("an aborted blob exists")
		}
	}
	// Aborted while parts are in flight.
	b, _ := data(3*partSize, 29)
	tmp := write(t, s, b)
	if err := tmp.Abort(); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, 0, 0)
}

func testRanges(t *testing.T, s store) {
	n := sizes[2]
	b, key := data(n, 30)
	if err := write(t, s, b).Commit(key); err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range []struct{ off, n int }{
		{0, 10}, {partSize - 5, 10}, {n - 7, 7}, {12, 100}, {n / 2, partSize + 3}, {0, n},
	} {
		if _, err := f.Seek(int64(r.off), io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, r.n)
		if _, err := io.ReadFull(f, got); err != nil {
			t.Fatalf("range %d+%d: %v", r.off, r.n, err)
		}
		if !bytes.Equal(got, b[r.off:r.off+r.n]) {
			t.Fatalf("range %d+%d differs", r.off, r.n)
		}
	}
	if end, err := f.Seek(0, io.SeekEnd); err != nil || end != int64(n) {
		t.Fatalf("Seek to the end: %d, %v", end, err)
	}
	if k, err := f.Read(make([]byte, 1)); k != 0 || err != io.EOF {
		t.Fatalf("Read at the end: %d, %v", k, err)
	}
}

func testDelete(t *testing.T, s store) {
	for i, n := range sizes[1:] {
		b, key := data(n, byte(40+i))
		if err := write(t, s, b).Commit(key); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2; j++ { // deleting a missing blob is not an error
			if err := s.Delete(key); err != nil {
				t.Fatalf("%d bytes: Delete %d: %v", n, j+1, err)
			}
		}
		if ok, err := s.Exists(key); ok || err != nil {
			t.Fatalf("%d bytes: after Delete: Exists = %v, %v", n, ok, err)
		}
		if _, err := s.Open(key); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("%d bytes: after Delete: Open = %v", n, err)
		}
		wantCount(t, s, 0, 0)
	}
}

// testSweep: what a process killed mid-upload (parts sent) or mid-commit
// (temporary object complete) leaves is invisible, kept while fresh (it
// may be another replica's upload in progress), and removed once stale;
// committed blobs stay.
func testSweep(t *testing.T, s store) {
	kept, key := data(sizes[2], 50) // on S3, a linked data object
	if err := write(t, s, kept).Commit(key); err != nil {
		t.Fatal(err)
	}
	b, _ := data(sizes[2], 51)
	write(t, s, b) // killed mid-upload: never finished
	synced := write(t, s, b)
	if err := synced.Sync(); err != nil { // killed before the copy into place
		t.Fatal(err)
	}
	wantCount(t, s, 1, 2)
	if n, err := s.RemoveStaleTemps(time.Hour); err != nil || n != 0 {
		t.Fatalf("RemoveStaleTemps(1h) removed %d (%v): fresh uploads must stay", n, err)
	}
	time.Sleep(10 * time.Millisecond)
	if n, err := s.RemoveStaleTemps(0); err != nil || n != 2 {
		t.Fatalf("RemoveStaleTemps(0) removed %d, want 2 (%v)", n, err)
	}
	wantCount(t, s, 1, 0)
	if got := readAll(t, s, key); !bytes.Equal(got, kept) {
		t.Fatal("the committed blob changed")
	}
}

func testBadKeys(t *testing.T, s store) {
	tmp := write(t, s, []byte("data"))
	if err := tmp.Commit("../../etc/passwd"); !errors.Is(err, blob.ErrBadKey) {
		t.Fatalf("Commit with a path: %v", err)
	}
	for _, k := range []string{"", "../x", "AB" + hex.EncodeToString(make([]byte, 31))} {
		if _, err := s.Open(k); !errors.Is(err, blob.ErrBadKey) {
			t.Fatalf("Open(%q): %v", k, err)
		}
		if err := s.Delete(k); !errors.Is(err, blob.ErrBadKey) {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	wantCount(t, s, 0, 0)
}

// testLarge streams 64 MiB in and out with the heap bounded by a few
// parts, whatever the size.
func testLarge(t *testing.T, s store) {
	const size = 64 << 20
	budget := uint64((2+1)*partSize + 16<<20) // parts in flight and filling, plus slack
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	sample := func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}
	rng := rand.NewChaCha8([32]byte{60})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	tmp, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	for left := size; left > 0; left -= len(buf) {
		rng.Read(buf)
		h.Write(buf)
		if _, err := tmp.Write(buf); err != nil {
			t.Fatal(err)
		}
		sample()
	}
	key := hex.EncodeToString(h.Sum(nil))
	if err := tmp.Commit(key); err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h.Reset()
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		sample()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if hex.EncodeToString(h.Sum(nil)) != key {
		t.Fatal("the 64 MiB blob read back differs")
	}
	if peak-base > budget {
		t.Fatalf("the heap grew by %d MiB moving 64 MiB, more than the %d MiB budget", (peak-base)>>20, budget>>20)
	}
	t.Logf("heap growth %.1f MiB for 64 MiB", float64(peak-base)/(1<<20))
}
