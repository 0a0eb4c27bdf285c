package keychain

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/memo"
)

// errShared refuses Apply on a State a Cache hands out to every caller.
var errShared = errors.New("keychain: Apply on a shared State (from Cache.Verify); Verify the links into a State of its own")

// A Cache remembers the chains it verified, by the SHA-256 of the user and
// every byte of every link, so that a device or party that fetches an
// unchanged chain before each request verifies it once: three Ed25519
// verifications per added device (its self- and binding signatures and the
// link's) that would otherwise be repeated on every request.
//
// Verify's verdict depends on the time only through the keys the links
// carry (parsing checks their validity now) and the links' signatures
// (their creation and expiry are checked against now); a chain is kept
// only until the first moment either could change (envelope.StableUntil
// of each), then verified again. Refusals are
// not kept. The States it returns are shared: they answer questions, and
// Apply refuses them.
type Cache struct{ m *memo.Cache[*State] }

// NewCache returns a cache of at most max chains; when it is full, an
// arbitrary entry makes room.
func NewCache(max int) *Cache { return &Cache{m: memo.New[*State](max)} }

// Verify is the package's Verify, answered from the cache when the same
// links of the same user were verified before and the verdict cannot have
// changed since.
func (c *Cache) Verify(user string, links []api.ChainLink) (*State, error) {
	sum := chainSum(user, links)
	now := time.Now()
	if st, ok := c.m.Get(sum, now); ok {
		return st, nil
	}
	st, err := Verify(user, links)
	if err != nil {
		return nil, err
	}
	var until time.Time
	for i := range links {
		// The link's signature (creation time, expiry: statement.Verify
		// checks both against now) and the key it adds.
		for _, data := range []string{links[i].Signature, links[i].PublicKey} {
			if data == "" {
				continue
			}
			u, ok := envelope.StableUntil([]byte(data), now)
			if !ok {
				return st, nil // not kept: verified again next time
			}
			until = memo.Earliest(until, u)
		}
	}
	st.shared = true
	c.m.Put(sum, st, until)
	return st, nil
}

// chainSum hashes the user and each field of each link, every one
// preceded by its length, so that no two chains share a sum.
func chainSum(user string, links []api.ChainLink) [32]byte {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(user)
	for i := range links {
		field(links[i].Statement)
		field(links[i].Signature)
		field(links[i].PublicKey)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
