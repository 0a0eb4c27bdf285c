package server

import (
	"bytes"
	"crypto/sha256"
	"io"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// Parsing a stored public key (envelope.ParseKey) verifies its self- and
// binding signatures: two Ed25519 verifications for a device or party key,
// several times the cost of verifying the statement signature it then
// checks. The answer routes parse the same device and party keys on every
// request, so parsed keys are kept here, by the SHA-256 of their exact
// stored bytes (a key whose row changes is a different entry).
//
// ParseKey's verdict depends on the time only through its check that the
// key has a valid signing and encryption key now; an entry is kept only
// until the first moment that verdict could change (a key or signature
// expiring, a key or signature — a revocation, say — becoming valid), after
// which the key is parsed, and checked, again. Everything else on a cached
// key is evaluated at the time of each use as before: Verify checks the
// key's validity when the signature was made, For reads the key's flags.

// keyCacheMax bounds the cache; when full, an arbitrary entry makes room.
const keyCacheMax = 4096

type cachedKey struct {
	key   *envelope.Key
	until time.Time // zero: no time limit
}

var publicKeys = struct {
	sync.Mutex
	m map[[32]byte]cachedKey
}{m: map[[32]byte]cachedKey{}}

// storedKey is envelope.ParseKey for keys read from the database, cached.
func storedKey(data []byte) (*envelope.Key, error) {
	sum := sha256.Sum256(data)
	now := time.Now()
	publicKeys.Lock()
	e, ok := publicKeys.m[sum]
	publicKeys.Unlock()
	if ok && (e.until.IsZero() || now.Before(e.until)) {
		return e.key, nil
	}
	k, err := envelope.ParseKey(data)
	if err != nil {
		return nil, err
	}
	until, ok := keyStableUntil(data, now)
	if !ok {
		return k, nil // not cached: parsed again next time
	}
	publicKeys.Lock()
	if len(publicKeys.m) >= keyCacheMax {
		for h := range publicKeys.m {
			delete(publicKeys.m, h)
			break
		}
	}
	publicKeys.m[sum] = cachedKey{key: k, until: until}
	publicKeys.Unlock()
	return k, nil
}

// keyStableUntil returns the earliest time after now at which a key or
// signature packet in data starts or stops being valid (zero if none
// ever does), or false when data cannot be scanned. Until then, any check
// of the key at the current time gives the answer it gives now.
func keyStableUntil(data []byte, now time.Time) (time.Time, bool) {
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
