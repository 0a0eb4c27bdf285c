package envelope

import (
	"bufio"
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// Split must read a message the same way whatever buffer the caller's
// reader has: bufio's smallest, one byte at a time, or none at all. The
// server hands it a small bufio.Reader; before, anything under 64 KiB was
// wrapped again.
func TestSplitAnyBuffer(t *testing.T) {
	a, b := mustKey(t, "a"), mustKey(t, "b")
	plain := bytes.Repeat([]byte("0123456789abcdef"), 40<<10/16+3) // larger than every buffer below
	for _, profile := range []Profile{Compat, Modern} {
		msg, _ := seal(t, profile, plain, a, b)
		want := splitData(t, bytes.NewReader(msg))
		for name, r := range map[string]io.Reader{
			"bufio 16":            bufio.NewReaderSize(bytes.NewReader(msg), 16),
			"bufio 4 KiB":         bufio.NewReaderSize(bytes.NewReader(msg), 4<<10),
			"one byte":            iotest.OneByteReader(bytes.NewReader(msg)),
			"half reads":          iotest.HalfReader(bytes.NewReader(msg)),
			"bytes.Buffer":        bytes.NewBuffer(msg),
			"bufio over one byte": bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(msg)), 16),
		} {
			if got := splitData(t, r); !bytes.Equal(got, want) {
				t.Errorf("%s, %s: the data packet differs (%d bytes, want %d)", profile, name, len(got), len(want))
			}
		}
	}
}

func splitData(t *testing.T, r io.Reader) []byte {
	t.Helper()
	m, err := Split(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.KeyPackets) != 2 {
		t.Fatalf("%d key packets, want 2", len(m.KeyPackets))
	}
	data, err := io.ReadAll(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// An in-memory message gets a buffer of its own size, not 64 KiB.
func TestReadBufferSize(t *testing.T) {
	for _, c := range []struct {
		r    io.Reader
		want int
	}{
		{bytes.NewReader(make([]byte, 300)), 300},
		{bytes.NewReader(nil), 16},
		{bytes.NewReader(make([]byte, 1<<20)), 64 << 10},
		{iotest.OneByteReader(bytes.NewReader(make([]byte, 300))), 64 << 10},
	} {
		if got := readBufferSize(c.r); got != c.want {
			t.Errorf("readBufferSize(%T) = %d, want %d", c.r, got, c.want)
		}
	}
}
