package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line bar on stderr when stderr is a terminal, and
// nothing otherwise.
type progress struct {
	label string
	total int64
	w     io.Writer
	start time.Time
	mu    sync.Mutex
	last  time.Time
	n     int64
}

func newProgress(label string, total int64) *progress {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return &progress{label: label, total: total, w: os.Stderr, start: time.Now()}
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (p *progress) set(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	el := time.Since(p.start).Seconds()
	rate := ""
	if el > 0.2 {
		rate = fmt.Sprintf("  %s/s", human(int64(float64(p.n)/el)))
	}
	if p.total > 0 {
		frac := float64(p.n) / float64(p.total)
		if frac > 1 {
			frac = 1
		}
		const width = 30
		fill := int(frac * width)
		fmt.Fprintf(p.w, "\r%-8s [%s%s] %3.0f%%  %s / %s%s   ", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			frac*100, human(p.n), human(p.total), rate)
	} else {
		fmt.Fprintf(p.w, "\r%-8s %s%s   ", p.label, human(p.n), rate)
	}
}

func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
	fmt.Fprintln(p.w)
}

// progressReader calls fn with the running count of bytes read through it.
type progressReader struct {
	r  io.Reader
	n  int64
	fn func(n int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	p.fn(p.n)
	return n, err
}
