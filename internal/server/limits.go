package server

import (
	"net"
	"net/http"
	"sync"
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
