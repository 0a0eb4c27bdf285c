package store

import (
	"context"
	"sync"
	"time"
)

// TokenCache keeps the owners of recently used bearer tokens, so that an
// authenticated request on PostgreSQL does not spend a round trip of its
// own on reading them (one statement in three or four of every request;
// issue 11). It is off until told that changes are heard, and only then:
//
//   - Version 8 of the schema announces every update, delete or truncate of
//     tokens, devices and parties on the NOTIFY channel AuthChannel, from
//     whichever replica or psql session it comes.
//   - Each replica's LISTEN connection (push.PGBroadcaster) calls Changed on
//     every such notification and once its LISTEN is active, and Lost as
//     soon as the connection breaks: from then on notifications may be
//     missed, so the cache empties and stays off until the next Changed.
//   - A read that began before a change is not cached after it: each read
//     carries the generation it started in, and a change starts a new one.
//   - The replica that revokes a device empties its own cache when the
//     revocation commits, so its next request is refused without waiting
//     for the notification.
//
// An entry also lives at most tokenCacheTTL (5 s) and never past its
// token's expiry, so nothing relies on the notifications alone: a LISTEN
// connection that dies silently is noticed only at its next ping, and
// until then a revocation reaches this replica when its entries expire. SQLite runs one
// keyholderd and reads a token in-process: there the cache stays off.
type TokenCache struct {
	mu      sync.Mutex
	on      bool
	gen     uint64
	entries map[tokenKey]tokenEntry
	bytes   int // the entries' sizes (entrySize), at most tokenCacheMaxBytes
	now     func() time.Time
}

// AuthChannel is the NOTIFY channel on which version 8's triggers announce
// changes to tokens, devices and parties.
const AuthChannel = "keyholder_auth"

// tokenCacheTTL bounds how long an entry is trusted; tokenCacheMax how many
// there are and tokenCacheMaxBytes how much they hold (beyond either the
// cache starts over, which costs one read each). Every read is a copy of
// the owner's key, and a key may be as large as an enrollment or a
// registration takes (256 KiB): without a bound in bytes, 10 000 tokens of
// one such device held 2.5 GB. An owner larger than tokenCacheMaxEntry is
// not cached at all (one read per request, as without the cache), so that
// such owners cannot empty the cache of everyone else's.
const (
	tokenCacheTTL      = 5 * time.Second
	tokenCacheMax      = 10000
	tokenCacheMaxBytes = 64 << 20
	tokenCacheMaxEntry = 16 << 10
)

type tokenKey struct{ kind, hash string }

type tokenEntry struct {
	owner   any // *Device or *Party, never handed out (see get)
	expires time.Time
	stored  time.Time
	size    int // entrySize
}

// entrySize approximates the bytes an entry holds: its owner's strings and
// key, the token hash twice (the map's key), and a fixed overhead.
func entrySize(k tokenKey, owner any) int {
	n := 256 + 2*len(k.hash)
	switch o := owner.(type) {
	case *Device:
		n += len(o.ID) + len(o.UserID) + len(o.Fingerprint) + len(o.PublicKey) + len(o.Status) + len(o.PushKind) + len(o.PushToken)
	case *Party:
		n += len(o.ID) + len(o.Name) + len(o.Fingerprint) + len(o.PublicKey)
	}
	return n
}

func newTokenCache(now func() time.Time) *TokenCache {
	return &TokenCache{entries: map[tokenKey]tokenEntry{}, now: now}
}

// Changed empties the cache and turns it on: something that authenticates
// requests may have changed, and changes are heard from now on.
func (c *TokenCache) Changed() { c.reset(true) }

// Lost empties the cache and turns it off: changes may go unheard.
func (c *TokenCache) Lost() { c.reset(false) }

// On reports whether the cache is on (changes are heard).
func (c *TokenCache) On() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.on
}

// Flush empties the cache, leaving it on or off.
func (c *TokenCache) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.clearLocked()
}

func (c *TokenCache) reset(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on = on
	c.gen++
	c.clearLocked()
}

func (c *TokenCache) clearLocked() {
	clear(c.entries)
	c.bytes = 0
}

// get returns a copy of the cached owner of the token (kind, hash) and the
// token's expiry; otherwise ok is false and gen is the generation a read
// from the database must give put.
func get[T Device | Party](c *TokenCache, kind, hash string) (owner *T, expires time.Time, gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.entries[tokenKey{kind, hash}]
	if !c.on || !found {
		return nil, time.Time{}, c.gen, false
	}
	now := c.now()
	if now.Sub(e.stored) >= tokenCacheTTL || !now.Before(e.expires) {
		delete(c.entries, tokenKey{kind, hash})
		c.bytes -= e.size
		return nil, time.Time{}, c.gen, false
	}
	v := *e.owner.(*T) // a copy: callers may change theirs
	return &v, e.expires, c.gen, true
}

// put caches owner (copied) for the token, unless the cache is off or a
// change has started a generation after gen.
func put[T Device | Party](c *TokenCache, gen uint64, kind, hash string, owner *T, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || gen != c.gen {
		return
	}
	v := *owner
	k := tokenKey{kind, hash}
	size := entrySize(k, &v)
	if size > tokenCacheMaxEntry {
		return
	}
	if old, found := c.entries[k]; found {
		delete(c.entries, k)
		c.bytes -= old.size
	}
	if len(c.entries) >= tokenCacheMax || c.bytes+size > tokenCacheMaxBytes {
		c.clearLocked()
	}
	c.entries[k] = tokenEntry{owner: &v, expires: expires, stored: c.now(), size: size}
	c.bytes += size
}

// authNotifiedSince is the schema version whose triggers announce changes
// on AuthChannel.
const authNotifiedSince = 8

// AuthNotified reports whether the database announces changes to tokens,
// devices and parties on AuthChannel: PostgreSQL at schema version 8 or
// later. Only then may the token cache be turned on.
func (s *Store) AuthNotified(ctx context.Context) (bool, error) {
	if !s.postgres {
		return false, nil
	}
	v, err := s.SchemaVersion(ctx)
	return v >= authNotifiedSince, err
}
