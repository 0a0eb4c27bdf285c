package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/keyholder/keyholder/pkg/api"
)

// limiterSet is a set of in-memory token buckets, one per key (a party id,
// a client address). A zero rate lets everything through.
type limiterSet struct {
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	m         map[string]*rate.Limiter
	lastPrune time.Time
}

// pruneAbove is the number of buckets above which full (idle) ones are
// dropped, so that many distinct keys (client addresses) cannot grow the
// set without bound.
const pruneAbove = 10000

func newLimiterSet(r rate.Limit, burst int) *limiterSet {
	return &limiterSet{rate: r, burst: burst, m: map[string]*rate.Limiter{}}
}

// allow takes a token from key's bucket.
func (l *limiterSet) allow(key string) bool {
	if l.rate <= 0 {
		return true
	}
	l.mu.Lock()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= pruneAbove {
			l.pruneLocked(time.Now())
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.m[key] = lim
	}
	l.mu.Unlock()
	return lim.Allow()
}

// pruneLocked drops the buckets that have refilled completely: a new
// bucket for the same key behaves the same. At most once a second.
func (l *limiterSet) pruneLocked(now time.Time) {
	if now.Sub(l.lastPrune) < time.Second {
		return
	}
	l.lastPrune = now
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
}

// len returns the number of buckets (tests).
func (l *limiterSet) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func rateLimited(detail string) error {
	return problem(http.StatusTooManyRequests, api.ProblemRateLimited, "Too many requests", detail)
}

// clientKey is the rate-limit key of the connection's peer address: the
// IPv4 address, or the /64 prefix of an IPv6 address (one host usually
// owns a whole /64). X-Forwarded-For is not read: behind a proxy every
// client shares the proxy's key.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// limitByClient rate-limits the unauthenticated routes (login challenge,
// token, enrollment) per client address, before the body is read.
func (s *Server) limitByClient(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.authLimiters.allow(clientKey(c.Request())) {
			return rateLimited("too many login or enrollment requests from this address")
		}
		return next(c)
	}
}

// slotSet counts what each key (a party id) has in flight, up to max at
// once. A max of zero or less lets everything through.
type slotSet struct {
	max int

	mu sync.Mutex
	m  map[string]int
}

func newSlotSet(max int) *slotSet { return &slotSet{max: max, m: map[string]int{}} }

// acquire takes one of key's slots, if one is free.
func (s *slotSet) acquire(key string) bool {
	if s.max <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[key] >= s.max {
		return false
	}
	s.m[key]++
	return true
}

// release gives back a slot that acquire took.
func (s *slotSet) release(key string) {
	if s.max <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[key] <= 1 {
		delete(s.m, key)
	} else {
		s.m[key]--
	}
}

// inUse returns the slots key holds (tests).
func (s *slotSet) inUse(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key]
}

// streamedRoutes are the routes whose body is streamed (uploads): their
// body must make progress, a byte at least every UploadIdleTimeout, however
// long it is in all. Every other body is a small JSON value that must
// arrive whole within BodyTimeout.
var streamedRoutes = map[string]bool{
	http.MethodPost + " " + echoPath(api.PathUserRecords): true,
}

func requestTimeout(detail string) error {
	return problem(http.StatusRequestTimeout, api.ProblemRequestTimeout, "Request timeout", detail)
}

// bodyDeadlines bounds how long a client may take to send a request body,
// with read deadlines on the connection (http.ResponseController), so that
// a slow or stalled client is cut off, even while no handler reads: the
// HTTP server itself drains an unread body before it answers. A handler
// whose read timed out answers 408 (to a client that is still listening);
// the connection is then closed.
func (s *Server) bodyDeadlines(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			return next(c)
		}
		b := &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(c.Response())}
		limit, detail := s.cfg.BodyTimeout, fmt.Sprintf("the request body did not arrive within %s", s.cfg.BodyTimeout)
		if streamedRoutes[r.Method+" "+c.Path()] {
			b.idle = s.cfg.UploadIdleTimeout
			limit, detail = b.idle, fmt.Sprintf("the upload sent nothing for %s", b.idle)
		}
		if err := b.rc.SetReadDeadline(time.Now().Add(limit)); err != nil {
			// No connection to set a deadline on (a handler test's
			// recorder): nothing to bound.
			return next(c)
		}
		r2 := r.WithContext(r.Context())
		r2.Body = b
		c.SetRequest(r2)
		err := next(c)
		if err != nil && b.timedOut.Load() {
			return requestTimeout(detail)
		}
		return err
	}
}

// deadlineBody is a request body read under a connection read deadline:
// a fixed one, or (idle > 0) one renewed before each read. The deadline is
// lifted once the body has been read to its end, so that it cannot cut the
// connection (and cancel the request's context) while the handler works.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	idle     time.Duration
	renewed  time.Time
	eof      bool
	timedOut atomic.Bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.idle > 0 {
		// Renew only now, as the handler asks for more: time the server
		// spends between reads (a slow disk) is not the client's. At most
		// a few times per idle period: a deadline is a lock and a timer.
		if now := time.Now(); now.Sub(b.renewed) >= b.idle/8 {
			b.rc.SetReadDeadline(now.Add(b.idle))
			b.renewed = now
		}
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
		b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.timedOut.Store(true)
	}
	return n, err
}
