package envelope

import (
	"bytes"
	"crypto/sha256"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/memo"
)

// KeyCache keeps parsed public keys. Parsing a key (ParseKey) verifies its
// self- and binding signatures: two Ed25519 verifications for a device or
// party key, several times the cost of verifying the statement signature
// it then checks. The server parses the same stored device and party keys
// on every request, and a device the same submitter and requester keys on
// every request it checks, so parsed keys are kept, by the SHA-256 of
// their exact bytes (other bytes are another entry).
//
// ParseKey's verdict depends on the time only through its check that the
// key has a valid signing and encryption key now; an entry is kept only
// until the first moment that verdict could change (a key or signature
// expiring, a key or signature — a revocation, say — becoming valid), after
// which the key is parsed, and checked, again. Everything else on a cached
// key is evaluated at the time of each use as before: Verify checks the
// key's validity when the signature was made, For reads the key's flags.

// The cached keys are shared: a Key is only read after parsing, so
// concurrent use is safe.
type KeyCache struct{ m *memo.Cache[*Key] }

// NewKeyCache returns a cache of at most max keys; when it is full, an
// arbitrary entry makes room.
func NewKeyCache(max int) *KeyCache { return &KeyCache{m: memo.New[*Key](max)} }

// Parse is ParseKey, answered from the cache when these bytes were parsed
// before and the verdict cannot have changed since.
func (c *KeyCache) Parse(data []byte) (*Key, error) {
	sum := sha256.Sum256(data)
	now := time.Now()
	if k, ok := c.m.Get(sum, now); ok {
		return k, nil
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, err
	}
	if until, ok := StableUntil(data, now); ok {
		c.m.Put(sum, k, until)
	} // else not kept: parsed again next time
	return k, nil
}

// StableUntil returns the earliest time after now at which a key or
// signature packet in data (a key, binary or armored) starts or stops
// being valid (zero if none ever does), or false when data cannot be
// scanned. Until then, ParseKey of data gives the answer it gives now:
// its only dependence on the time. A cache of anything derived from
// parsing a key (KeyCache, keychain.Cache) keeps it until then.
func StableUntil(data []byte, now time.Time) (time.Time, bool) {
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN PGP")) {
		block, err := armor.Decode(r)
		if err != nil {
			return time.Time{}, false
		}
		r = block.Body
	}
	var until time.Time
	event := func(t time.Time) {
		if t.After(now) && (until.IsZero() || t.Before(until)) {
			until = t
		}
	}
	// A key lifetime counts from the creation of the key its signature
	// binds; rather than rely on the packet order, every key lifetime is
	// counted from every key's creation (a few extra, earlier re-parses).
	var created []time.Time
	var lifetimes []time.Duration
	pr := packet.NewReader(r)
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return time.Time{}, false
		}
		switch p := p.(type) {
		case *packet.PublicKey:
			created = append(created, p.CreationTime)
		case *packet.PrivateKey:
			created = append(created, p.CreationTime)
		case *packet.Signature:
			event(p.CreationTime)
			if p.SigLifetimeSecs != nil && *p.SigLifetimeSecs != 0 {
				event(p.CreationTime.Add(time.Duration(*p.SigLifetimeSecs) * time.Second))
			}
			if p.KeyLifetimeSecs != nil && *p.KeyLifetimeSecs != 0 {
				lifetimes = append(lifetimes, time.Duration(*p.KeyLifetimeSecs)*time.Second)
			}
		}
	}
	for _, c := range created {
		event(c)
		for _, l := range lifetimes {
			event(c.Add(l))
		}
	}
	return until, true
}
