package client

import (
	"bufio"
	"io"
	"sync"
)

// The large buffers of uploads and downloads are reused. A small record's
// upload allocated and zeroed 512 KiB (its copy buffer and the body's
// writer) and its opening 1 MiB: their allocation and the garbage
// collection it brought cost a party more CPU than the record's
// cryptography (issue 11). A buffer goes back to its pool only when
// nothing holds it: io.Reader and io.Writer may not retain the slices they
// are given.
var (
	copyBuffers = sync.Pool{New: func() any { return new([256 << 10]byte) }}
	openBuffers = sync.Pool{New: func() any { return new([1 << 20]byte) }}
	bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}
)

// copyBuffered is io.CopyBuffer with a pooled 256 KiB buffer.
func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	b := copyBuffers.Get().(*[256 << 10]byte)
	defer copyBuffers.Put(b)
	return io.CopyBuffer(dst, src, b[:])
}
