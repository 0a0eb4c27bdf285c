package envelope

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// failAfter accepts n bytes and then fails every write.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// TestSealReportsWriteErrors checks that a destination failing in the middle
// of the data packet surfaces from Write or Close for both profiles, even
// though the modern profile writes from another goroutine.
func TestSealReportsWriteErrors(t *testing.T) {
	device := mustKey(t, "device")
	boom := errors.New("disk full")
	chunk := bytes.Repeat([]byte{7}, 64<<10)
	for _, profile := range []Profile{Compat, Modern} {
		dst := &failAfter{n: 1 << 20, err: boom}
		w, err := Seal(dst, profile, device)
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for i := 0; i < 64 && werr == nil; i++ { // 4 MiB
			_, werr = w.Write(chunk)
		}
		cerr := w.Close()
		if !errors.Is(werr, boom) && !errors.Is(cerr, boom) {
			t.Fatalf("%s: write error lost: Write=%v Close=%v", profile, werr, cerr)
		}
	}
}

// shortBigWrites takes only half of any write over 1000 octets (the data
// packet's chunks, not the key packets) and reports no error, against
// io.Writer's contract.
type shortBigWrites struct{ bytes.Buffer }

func (s *shortBigWrites) Write(p []byte) (int, error) {
	if len(p) > 1000 {
		p = p[:len(p)/2]
	}
	return s.Buffer.Write(p)
}

// TestSealShortWrite checks that a destination that drops octets without
// an error fails the seal: otherwise Digest would describe a data packet
// that was never written whole.
func TestSealShortWrite(t *testing.T) {
	for _, profile := range []Profile{Compat, Modern} {
		dst := &shortBigWrites{}
		w, err := Seal(dst, profile, mustKey(t, "device"))
		if err != nil {
			t.Fatal(err)
		}
		_, werr := w.Write(make([]byte, 1<<20))
		cerr := w.Close()
		if !errors.Is(werr, io.ErrShortWrite) && !errors.Is(cerr, io.ErrShortWrite) {
			t.Fatalf("%s: Write returned %v, Close %v; the digest counts %d octets, %d were written", profile, werr, cerr, w.Digest().Size, dst.Len())
		}
	}
}
