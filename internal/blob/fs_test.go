package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestNewFSKeepsFreshTemps: a starting store removes only temporary files
// that nobody has written to for StaleTempAge, so replicas sharing the
// directory do not kill each other's uploads.
func TestNewFSKeepsFreshTemps(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	inFlight, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inFlight.Write([]byte("uploading")); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(s.TempDir(), "upload-crashed")
	other := filepath.Join(s.TempDir(), "not-an-upload")
	for _, p := range []string{old, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		past := time.Now().Add(-StaleTempAge - time.Hour)
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}

	// Another replica starts on the same directory.
	if _, err := NewFS(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inFlight.Name()); err != nil {
		t.Fatalf("the in-flight upload's temporary file was removed: %v", err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("the stale temporary file is still there (%v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("a file that is not an upload was removed")
	}
	// The in-flight upload completes.
	data := []byte("uploading")
	sum := sha256.Sum256(data)
	if err := inFlight.Commit(hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	if n, err := s.RemoveStaleTemps(StaleTempAge); err != nil || n != 0 {
		t.Fatalf("RemoveStaleTemps: %d %v", n, err)
	}
}

// writeReadBack writes aligned 1 MiB pieces and an odd tail through a
// temporary blob, commits it and reads it back.
func writeReadBack(t *testing.T, s *FS) {
	t.Helper()
	buf := AlignedBuffer(1 << 20)
	var all []byte
	tmp, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		for j := range buf {
			buf[j] = byte(i*7 + j)
		}
		if _, err := tmp.Write(buf); err != nil {
			t.Fatal(err)
		}
		all = append(all, buf...)
	}
	tail := []byte("an unaligned tail")
	if _, err := tmp.Write(tail); err != nil {
		t.Fatal(err)
	}
	all = append(all, tail...)
	if err := tmp.Sync(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(all)
	key := hex.EncodeToString(sum[:])
	if err := tmp.Commit(key); err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != int64(len(all)) || !bytes.Equal(got, all) {
		t.Fatalf("blob of %d bytes (size %d) differs from the %d written", len(got), f.Size(), len(all))
	}
	if _, temps, _ := s.Count(); temps != 0 {
		t.Fatalf("%d temporary files left", temps)
	}
}

// TestFSTmpfs: on tmpfs (which refuses O_DIRECT on many kernels), and with
// O_DIRECT refused at the first write (EINVAL) or fallocate unsupported
// (EOPNOTSUPP), uploads still land intact.
func TestFSTmpfs(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm: cannot test on tmpfs here")
	}
	dir, err := os.MkdirTemp("/dev/shm", "keyholder-blob-test-")
	if err != nil {
		t.Skipf("/dev/shm is not writable: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testFallbacks(t, dir)
}

// TestFSFallbacks: the same on the ordinary test directory.
func TestFSFallbacks(t *testing.T) { testFallbacks(t, t.TempDir()) }

func testFallbacks(t *testing.T, root string) {
	for _, c := range []struct {
		name      string
		writeErr  error
		noFalloc  bool
		subdirTag string
	}{
		{name: "as is", subdirTag: "a"},
		{name: "O_DIRECT write EINVAL", writeErr: syscall.EINVAL, subdirTag: "b"},
		{name: "no fallocate", noFalloc: true, subdirTag: "c"},
		{name: "neither", writeErr: syscall.EINVAL, noFalloc: true, subdirTag: "d"},
	} {
		t.Run(c.name, func(t *testing.T) {
			directWriteErr = c.writeErr
			defer func() { directWriteErr = nil }()
			if c.noFalloc {
				fallocate = func(*os.File, int64, int64) bool { return false }
				defer func() { fallocate = preallocate }()
			}
			s, err := NewFS(filepath.Join(root, c.subdirTag))
			if err != nil {
				t.Fatal(err)
			}
			writeReadBack(t, s)
		})
	}
}

// TestFSWriteErrorIsSticky: after a write failed, the temporary blob
// cannot be committed.
func TestFSWriteErrorIsSticky(t *testing.T) {
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tmp, _ := s.Create()
	ft := tmp.(*fsTemp)
	if !ft.direct {
		t.Skip("this filesystem has no O_DIRECT")
	}
	directWriteErr = syscall.EIO
	_, err = tmp.Write(AlignedBuffer(Align))
	directWriteErr = nil
	if err == nil {
		t.Fatal("the write did not fail")
	}
	if err := tmp.Commit(hex.EncodeToString(make([]byte, 32))); err == nil {
		t.Fatal("a failed temporary blob was committed")
	}
	if b, temps, _ := s.Count(); b != 0 || temps != 0 {
		t.Fatalf("%d blobs, %d temps left", b, temps)
	}
}

// TestFSCheck: the readiness check of the blob store fails for too little
// free space and for a directory it cannot write to, and leaves nothing.
func TestFSCheck(t *testing.T) {
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(0); err != nil {
		t.Fatalf("Check(0): %v", err)
	}
	if b, tmp, _ := s.Count(); b+tmp != 0 {
		t.Fatalf("Check left %d files", b+tmp)
	}
	if err := s.Check(1 << 62); runtime.GOOS == "linux" && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Check(2^62) = %v, want ENOSPC", err)
	}
	if err := os.RemoveAll(s.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(0); err == nil {
		t.Fatal("Check passed without a temporary directory")
	}
}

// TestFSPreallocation: a temporary file is preallocated as far ahead as
// it is long (at least preallocMin, at most preallocStep), so a small
// blob reserves little; on tmpfs nothing is preallocated (a 64 MiB step
// per upload cost 32 ms of CPU per small record there).
func TestFSPreallocation(t *testing.T) {
	type call struct{ off, n int64 }
	var calls []call
	fallocate = func(_ *os.File, off, n int64) bool { calls = append(calls, call{off, n}); return true }
	defer func() { fallocate = preallocate }()
	put := func(s *FS, size int) {
		t.Helper()
		calls = nil
		tmp, err := s.Create()
		if err != nil {
			t.Fatal(err)
		}
		defer tmp.Abort()
		buf := AlignedBuffer(1 << 20)
		for left := size; left > 0; left -= len(buf) {
			if _, err := tmp.Write(buf[:min(left, len(buf))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := tmp.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !s.noPrealloc {
		put(s, 10<<10)
		if len(calls) != 1 || calls[0].n > preallocMin {
			t.Fatalf("a 10 KiB blob preallocated %v, want one call of at most %d bytes", calls, preallocMin)
		}
		put(s, 200<<20)
		var reserved int64
		for i, c := range calls {
			if c.off != reserved || c.n > preallocStep || (i > 0 && c.n < calls[i-1].n) {
				t.Fatalf("preallocation steps %v: not contiguous, growing and at most %d", calls, preallocStep)
			}
			reserved += c.n
		}
		if reserved < 200<<20 || reserved > 200<<20+preallocStep {
			t.Fatalf("reserved %d bytes for 200 MiB", reserved)
		}
		if len(calls) > 10 {
			t.Fatalf("%d fallocate calls for 200 MiB: the steps do not grow", len(calls))
		}
	}
	if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
		t.Skip("no /dev/shm: cannot test on tmpfs here")
	}
	dir, err := os.MkdirTemp("/dev/shm", "keyholder-blob-test-")
	if err != nil {
		t.Skipf("/dev/shm is not writable: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	shm, err := NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(shm, 10<<10)
	put(shm, 3<<20)
	if len(calls) != 0 {
		t.Fatalf("on tmpfs: fallocate %v, want none", calls)
	}
}
