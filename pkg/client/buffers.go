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
// cryptography (issue 11).
//
// A buffer goes back to its pool only after a use that ended well, and
// cleared where it may have held plaintext: after a failure, a writer
// (the modern profile's background encryptor) may still hold it.
var (
	copyBuffers = sync.Pool{New: func() any { return new([256 << 10]byte) }}
	openBuffers = sync.Pool{New: func() any { return new([1 << 20]byte) }}
	bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}
)

// copyBuffered is io.Copy through a pooled 256 KiB buffer, where a buffer
// is needed at all.
func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	if _, ok := src.(io.WriterTo); ok {
		return io.Copy(dst, src)
	}
	if _, ok := dst.(io.ReaderFrom); ok {
		return io.Copy(dst, src)
	}
	b := copyBuffers.Get().(*[256 << 10]byte)
	n, err := io.CopyBuffer(dst, src, b[:])
	if err == nil {
		clear(b[:min(n, int64(len(b)))])
		copyBuffers.Put(b)
	}
	return n, err
}
