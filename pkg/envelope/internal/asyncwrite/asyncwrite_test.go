package asyncwrite

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// TestOrderAndSizes: whatever the write sizes, the underlying writer gets
// exactly the bytes written, in order, also when Close comes mid-chunk.
func TestOrderAndSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const chunk = 1 << 12
	for _, total := range []int{0, 1, chunk - 1, chunk, chunk + 1, 7*chunk + 123} {
		data := make([]byte, total)
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		var out bytes.Buffer
		w := New(&out, chunk, 3)
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(3*chunk))
			if k, err := w.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("Write = %d, %v", k, err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("%d bytes: output differs", total)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := w.Write([]byte{1}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
	}
}

// TestReusesBuffers: after warm-up, writing allocates nothing.
func TestReusesBuffers(t *testing.T) {
	w := New(discard{}, 1<<16, 4)
	p := make([]byte, 12<<10)
	for range 64 {
		w.Write(p)
	}
	if allocs := testing.AllocsPerRun(200, func() { w.Write(p) }); allocs > 0 {
		t.Fatalf("Write allocates %.2f times per call after warm-up", allocs)
	}
	w.Close()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type failAfter struct{ n int }

var errFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

// TestErrors: the underlying writer's error surfaces from Write or Close.
func TestErrors(t *testing.T) {
	w := New(&failAfter{n: 1 << 14}, 1<<12, 2)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, 1000))
	}
	cerr := w.Close()
	if !errors.Is(werr, errFull) && !errors.Is(cerr, errFull) {
		t.Fatalf("error lost: Write=%v Close=%v", werr, cerr)
	}
	if !errors.Is(cerr, errFull) {
		t.Fatalf("Close = %v, want the write error", cerr)
	}
}
