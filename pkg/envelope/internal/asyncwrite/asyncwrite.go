// Package asyncwrite moves writes onto a second goroutine, so that a
// producer (a cipher, a decryptor) and a consumer (a hash, a file) use both
// cores of a machine instead of taking turns.
//
// Writes are gathered into chunks of a fixed size, and a fixed set of chunk
// buffers cycles between the two goroutines: many small hand-offs cost a
// context switch apiece, and allocating a fresh buffer whenever the consumer
// lags costs more in garbage collection and page faults than the work being
// moved.
package asyncwrite

import (
	"errors"
	"io"
	"sync"
)

// A Writer passes what is written to it on to an io.Writer from another
// goroutine. Write and Close must not be called concurrently.
type Writer struct {
	w     io.Writer
	chunk int
	cur   []byte // the chunk being filled; nil between chunks
	work  chan []byte
	free  chan []byte
	done  chan struct{}
	fail  chan struct{} // closed once the consumer's write failed
	err   error         // set by the consumer before fail is closed
	once  sync.Once
	close error
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("asyncwrite: write after Close")

// New starts a Writer that hands w chunks of chunk bytes, with buffers
// chunks in flight at most.
func New(w io.Writer, chunk, buffers int) *Writer {
	a := &Writer{
		w:     w,
		chunk: chunk,
		work:  make(chan []byte, buffers),
		free:  make(chan []byte, buffers),
		done:  make(chan struct{}),
		fail:  make(chan struct{}),
	}
	for range buffers {
		a.free <- nil // allocated on first use
	}
	go a.run()
	return a
}

func (a *Writer) run() {
	defer close(a.done)
	for buf := range a.work {
		if a.err == nil {
			if _, err := a.w.Write(buf); err != nil {
				a.err = err
				close(a.fail)
			}
		}
		a.free <- buf[:0]
	}
}

// Write copies p into chunks and hands each full chunk to the other
// goroutine. An error of the underlying writer is returned by a later Write
// or by Close.
func (a *Writer) Write(p []byte) (int, error) {
	select {
	case <-a.done:
		return 0, ErrClosed
	default:
	}
	n := len(p)
	for len(p) > 0 {
		if a.cur == nil {
			select {
			case a.cur = <-a.free:
			case <-a.fail:
				return n - len(p), a.err
			}
			if a.cur == nil {
				a.cur = make([]byte, 0, a.chunk)
			}
		}
		k := min(len(p), cap(a.cur)-len(a.cur))
		a.cur = append(a.cur, p[:k]...)
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.work <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// Close hands over the last, partial chunk, waits until everything written
// has reached the underlying writer, and returns its first error. Calling
// it again returns the same result.
func (a *Writer) Close() error {
	a.once.Do(func() {
		if len(a.cur) > 0 {
			a.work <- a.cur
			a.cur = nil
		}
		close(a.work)
		<-a.done
		a.close = a.err
	})
	return a.close
}
