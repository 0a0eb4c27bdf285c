package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync"
	"time"
)

// TokenCache keeps the owners of recently used bearer tokens, so that an
// authenticated request on PostgreSQL does not spend a round trip of its
// own on reading them (one statement in three or four of every request;
// issue 11). It is on only while it hears of every change:
//
//   - Version 8 of the schema announces every update, delete or truncate of
//     tokens, devices and parties on the NOTIFY channel AuthChannel, from
//     whichever replica or psql session it comes (AuthNotified checks that
//     the triggers are there and fire).
//   - Each replica's LISTEN connection (push.PGBroadcaster) calls Listening
//     once its LISTEN is active, Heard for every notification, and Lost as
//     soon as the connection breaks: from then on notifications may be
//     missed, so the cache empties and stays off until Listening again.
//   - Listening does not turn it on: it sends a probe, a notification with
//     a payload of its own, through the store's connections, and the cache
//     turns on when the LISTEN connection hears that probe. So a LISTEN
//     connection that hears another database (a wrong DSN, a pooling proxy
//     in between) never turns it on. Every other notification empties it.
//   - A read that began before a change is not cached after it: each read
//     carries the generation it started in (a ticket), and a change starts
//     a new one.
//   - The replica that revokes a device empties its own cache when the
//     revocation commits, so its next request is refused without waiting
//     for the notification.
//
// An entry also lives at most tokenCacheTTL (5 s) from its read and never
// past its token's expiry, so nothing relies on the notifications alone: a
// LISTEN connection that dies silently is noticed only at its next ping,
// and until then a revocation reaches this replica when its entries
// expire. SQLite runs one keyholderd and reads a token in-process: there
// the cache stays off.
type TokenCache struct {
	mu      sync.Mutex
	on      bool
	gen     uint64
	entries map[tokenKey]tokenEntry
	bytes   int // the entries' sizes (entrySize), at most tokenCacheMaxBytes
	now     func() time.Time
	// probe sends a notification on AuthChannel through the store's
	// connections (nil: the store cannot; the cache never turns on by
	// itself); nonce is the payload of the probe awaited, if any.
	probe func(payload string) error
	nonce string
	// hits and misses count the lookups answered from the cache and
	// those read from the database while it was on (Stats).
	hits, misses uint64
}

// TokenCacheStats is what the cache has done since the store opened.
type TokenCacheStats struct {
	On           bool
	Hits, Misses uint64
	Entries      int
}

// Stats returns the cache's state and counts (for metrics).
func (c *TokenCache) Stats() TokenCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return TokenCacheStats{On: c.on, Hits: c.hits, Misses: c.misses, Entries: len(c.entries)}
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

// Listening empties the cache, turns it off and sends a probe: the LISTEN
// connection on AuthChannel is active, and the cache turns on once it
// hears the probe (Heard). If the probe cannot be sent, the cache stays
// off until the next Listening.
func (c *TokenCache) Listening() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked(false)
	if c.probe == nil {
		return
	}
	c.nonce = "probe " + rand.Text()
	go c.probe(c.nonce) // not from the listener's goroutine: it must read on
}

// Heard empties the cache: a notification on AuthChannel says something
// that authenticates requests may have changed. The awaited probe also
// turns the cache on.
func (c *TokenCache) Heard(payload string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.emptyLocked()
	if c.nonce != "" && payload == c.nonce {
		c.on = true
		c.nonce = ""
	}
}

// Changed empties the cache and turns it on without a probe, for a caller
// that knows every change reaches it some other way (tests do).
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
	c.emptyLocked()
}

func (c *TokenCache) reset(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked(on)
}

// resetLocked empties the cache, turns it on or off and forgets the probe
// awaited.
func (c *TokenCache) resetLocked(on bool) {
	c.on = on
	c.nonce = ""
	c.emptyLocked()
}

// emptyLocked drops every entry and starts a generation, so that no read
// begun before is kept.
func (c *TokenCache) emptyLocked() {
	c.gen++
	c.clearLocked()
}

func (c *TokenCache) clearLocked() {
	clear(c.entries)
	c.bytes = 0
}

// ticket is what a miss gives the read from the database that follows:
// the generation it began in and when, for put.
type ticket struct {
	gen uint64
	at  time.Time
}

// get returns a copy of the cached owner of the token (kind, hash) and the
// token's expiry; otherwise ok is false, and the ticket is put's.
func get[T Device | Party](c *TokenCache, kind, hash string) (owner *T, expires time.Time, t ticket, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on { // put stores nothing, so the read needs no time (SQLite reads every token)
		return nil, time.Time{}, ticket{gen: c.gen}, false
	}
	now := c.now()
	t = ticket{c.gen, now}
	e, found := c.entries[tokenKey{kind, hash}]
	if !found {
		c.misses++
		return nil, time.Time{}, t, false
	}
	if now.Sub(e.stored) >= tokenCacheTTL || !now.Before(e.expires) {
		delete(c.entries, tokenKey{kind, hash})
		c.bytes -= e.size
		c.misses++
		return nil, time.Time{}, t, false
	}
	c.hits++
	return cloneOwner(e.owner.(*T)), e.expires, t, true
}

// put caches a copy of owner for the token, read from the database with
// t, unless the cache is off or a change has started a generation since.
// The entry's life counts from the read's start.
func put[T Device | Party](c *TokenCache, t ticket, kind, hash string, owner *T, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on || t.gen != c.gen {
		return
	}
	k := tokenKey{kind, hash}
	size := entrySize(k, owner)
	if size > tokenCacheMaxEntry {
		return
	}
	v := cloneOwner(owner)
	if old, found := c.entries[k]; found {
		delete(c.entries, k)
		c.bytes -= old.size
	}
	if len(c.entries) >= tokenCacheMax || c.bytes+size > tokenCacheMaxBytes {
		c.clearLocked()
	}
	c.entries[k] = tokenEntry{owner: v, expires: expires, stored: t.at, size: size}
	c.bytes += size
}

// AuthNotified reports whether the database announces changes to tokens,
// devices and parties on AuthChannel: PostgreSQL with version 8's nine
// triggers in the store's schema, enabled, and a session that fires them
// (session_replication_role origin, the default). Only then may the token
// cache be turned on.
func (s *Store) AuthNotified(ctx context.Context) (bool, error) {
	if !s.postgres {
		return false, nil
	}
	var names []string
	for _, table := range []string{"tokens", "devices", "parties"} {
		for _, op := range []string{"updated", "deleted", "truncated"} {
			names = append(names, table+"_auth_"+op)
		}
	}
	var ok bool
	err := s.db.WithContext(ctx).Raw(`SELECT current_setting('session_replication_role') = 'origin' AND
		(SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = current_schema() AND t.tgenabled IN ('O', 'A') AND t.tgname IN ?) = ?`, names, len(names)).Scan(&ok).Error
	return ok, err
}

// cloneOwner copies an owner to its last byte, so that neither a caller
// nor the cache can change the other's.
func cloneOwner[T Device | Party](o *T) *T {
	v := *o
	switch p := any(&v).(type) {
	case *Device:
		p.PublicKey = bytes.Clone(p.PublicKey)
		if p.RevokedAt != nil {
			at := *p.RevokedAt
			p.RevokedAt = &at
		}
	case *Party:
		p.PublicKey = bytes.Clone(p.PublicKey)
	}
	return &v
}
