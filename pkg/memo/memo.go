// Package memo keeps the results of verifications that hold until a known
// time: a parsed key (envelope.KeyCache), a verified key chain
// (keychain.Cache). An entry is found by the SHA-256 of everything the
// verification read, and answers only before the first moment its verdict
// could change. It is small and bounded on purpose; a general cache
// library would bring eviction policies these callers do not need.
package memo

import (
	"sync"
	"time"
)

// Cache holds at most max values; when it is full, an arbitrary entry
// makes room. It is safe for concurrent use.
type Cache[V any] struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]entry[V]
}

type entry[V any] struct {
	v     V
	until time.Time // zero: no time limit
}

// New returns a cache of at most max values.
func New[V any](max int) *Cache[V] {
	return &Cache[V]{max: max, m: map[[32]byte]entry[V]{}}
}

// Get returns the value kept for sum if it is still valid at now.
func (c *Cache[V]) Get(sum [32]byte, now time.Time) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[sum]
	c.mu.Unlock()
	if ok && (e.until.IsZero() || now.Before(e.until)) {
		return e.v, true
	}
	var zero V
	return zero, false
}

// Put keeps v for sum until until (zero: no time limit).
func (c *Cache[V]) Put(sum [32]byte, v V, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[sum]; !ok && len(c.m) >= c.max {
		for h := range c.m {
			delete(c.m, h)
			break
		}
	}
	c.m[sum] = entry[V]{v: v, until: until}
}

// Earliest returns the earlier of two validity limits, zero meaning
// none.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
