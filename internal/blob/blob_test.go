package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
)

func TestFS(t *testing.T) {
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("ciphertext"), 1000)
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])

	tmp, _ := s.Create()
	tmp.Write(data)
	tmp.Abort()
	if b, tm, _ := s.Count(); b != 0 || tm != 0 {
		t.Fatalf("after Abort: %d blobs, %d temps", b, tm)
	}

	tmp, _ = s.Create()
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Commit(key); err != nil {
		t.Fatal(err)
	}
	tmp.Abort() // no-op after commit
	if b, tm, _ := s.Count(); b != 1 || tm != 0 {
		t.Fatalf("after Commit: %d blobs, %d temps", b, tm)
	}
	f, err := s.Open(key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) || f.Size() != int64(len(data)) {
		t.Fatal("blob content differs")
	}
	if _, err := s.Open("../../etc/passwd"); err != ErrBadKey {
		t.Fatalf("Open with a path: %v", err)
	}
	if err := s.Delete(key); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(key); ok {
		t.Fatal("blob still exists after Delete")
	}
}

func TestFSDirectAndBuffered(t *testing.T) {
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Aligned 1 MiB pieces, then an odd tail (switches to buffered I/O).
	buf := AlignedBuffer(1 << 20)
	var all []byte
	tmp, _ := s.Create()
	for i := 0; i < 3; i++ {
		for j := range buf {
			buf[j] = byte(i + j)
		}
		if _, err := tmp.Write(buf); err != nil {
			t.Fatal(err)
		}
		all = append(all, buf...)
	}
	if _, err := tmp.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	all = append(all, "tail"...)
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
	got, _ := io.ReadAll(f)
	if f.Size() != int64(len(all)) || !bytes.Equal(got, all) {
		t.Fatalf("blob of %d bytes differs (size %d)", len(got), f.Size())
	}
}
