// Package keychain verifies a user's key chain: the sequence of links,
// each a statement signed by one of the user's devices, that decides which
// keys the user's records are sealed to and whose approvals and grants
// count.
//
// The first link adds the user's first device and is signed by that
// device (the operator's one-time enrollment code only lets it in). Every
// later link — another device added, a device revoked, the recovery key
// set or removed — is signed by a device the chain already holds as
// active, and names the SHA-256 of the link before it. The server stores
// and serves the chain but cannot extend it, so an operator cannot add a
// key to a user without a device's signature; a party that pinned the
// chain's first device (Pin) also notices a chain replaced as a whole.
//
// The same code checks a link when the server appends it, when a party
// fetches a user's keys, and when a device checks its own user's chain.
// No library does this (it is Keyholder's own format); it is small on
// purpose and every rule is in Apply.
package keychain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// ErrChain wraps every reason a chain or link is refused.
var ErrChain = errors.New("key chain refused")

// ErrPin reports a chain that does not extend the one the caller pinned.
var ErrPin = errors.New("key chain does not match the pin")

// ErrBehind marks the ErrPin of a chain with fewer links than the pin has
// seen: rolled back, or read before the links the pin has seen were added
// (a copy served with a request just before the chain grew).
var ErrBehind = errors.New("key chain behind the pin")

// behindErr is an ErrPin and an ErrBehind.
type behindErr struct{ msg string }

func (e *behindErr) Error() string   { return e.msg }
func (e *behindErr) Unwrap() []error { return []error{ErrPin, ErrBehind} }

func chainErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrChain, fmt.Sprintf(format, args...))
}

// LinkHash is the SHA-256 of a link statement: the next link's prev.
func LinkHash(statement []byte) [32]byte { return sha256.Sum256(statement) }

// KeyHash is the SHA-256 of a key's binary transferable public key as
// Keyholder writes it (Key.Bytes, which the armored key a link carries
// holds): the key-sha256 of the links Sign makes.
func KeyHash(k *envelope.Key) [32]byte { return sha256.Sum256(k.Public().Bytes()) }

// maxKeySize bounds the armored key a link may carry.
const maxKeySize = 256 << 10

// carriedKey decodes the armored public key a link carries and returns it
// with the SHA-256 of its binary bytes exactly as carried (whatever
// implementation encoded them: GnuPG writes old-format packet headers, Go
// new-format ones), which is what the link's key-sha256 binds.
func carriedKey(armored string) (*envelope.Key, [32]byte, error) {
	var sum [32]byte
	if len(armored) > maxKeySize {
		return nil, sum, fmt.Errorf("the key is %d bytes, more than %d", len(armored), maxKeySize)
	}
	if n := strings.Count(armored, "-----BEGIN "); n != 1 {
		return nil, sum, fmt.Errorf("%d armored blocks, want one public key", n)
	}
	blk, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return nil, sum, fmt.Errorf("the key is not ASCII-armored: %v", err)
	}
	if blk.Type == openpgp.PrivateKeyType {
		return nil, sum, errors.New("it is a private key: a link carries the public key only")
	}
	if blk.Type != openpgp.PublicKeyType {
		return nil, sum, fmt.Errorf("the armored block is a %q, not a public key block", blk.Type)
	}
	bin, err := io.ReadAll(io.LimitReader(blk.Body, maxKeySize+1))
	if err != nil {
		return nil, sum, fmt.Errorf("the armored key does not decode: %v", err)
	}
	if len(bin) > maxKeySize {
		return nil, sum, fmt.Errorf("the key is more than %d bytes", maxKeySize)
	}
	k, err := envelope.ParseKey(bin)
	if err != nil {
		return nil, sum, err
	}
	return k, sha256.Sum256(bin), nil
}

// A Member is a device key the chain added, and revoked if Revoked >= 0.
type Member struct {
	Key *envelope.Key
	// KeySHA256 is the key-sha256 the add-device link bound; a revocation
	// names the same.
	KeySHA256 [32]byte
	// Added and Revoked are the seq of the links that added and revoked
	// the device (Revoked is -1 while it is active).
	Added, Revoked int64
}

// Active reports whether the device has not been revoked.
func (m *Member) Active() bool { return m.Revoked < 0 }

// A State is what a verified chain says: the user's devices and recovery
// key, and the hashes that a pin and the next link refer to.
type State struct {
	user      string
	hashes    [][32]byte // hashes[i] is the hash of link i
	lastTime  int64
	members   []*Member // in the order they were added
	byFpr     map[string]*Member
	recovery  *envelope.Key
	recovHash [32]byte
	shared    bool // handed out by a Cache: Apply refuses it
}

// New returns the empty chain of user: the state before its first link.
func New(user string) *State {
	return &State{user: user, byFpr: map[string]*Member{}}
}

// Verify checks every link of a user's chain, in order, and returns the
// state it leads to. An empty chain is an error: the user has no device.
func Verify(user string, links []api.ChainLink) (*State, error) {
	if len(links) == 0 {
		return nil, chainErr("user %s has no key chain (no device enrolled)", user)
	}
	s := New(user)
	for i := range links {
		if err := s.Apply(links[i]); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// User returns the id of the user whose chain this is.
func (s *State) User() string { return s.user }

// Len returns the number of links applied.
func (s *State) Len() int { return len(s.hashes) }

// Head returns the hash of the last link (the next link's prev), or zero
// for an empty chain.
func (s *State) Head() [32]byte {
	if len(s.hashes) == 0 {
		return [32]byte{}
	}
	return s.hashes[len(s.hashes)-1]
}

// Genesis returns the fingerprint of the first device, the one a party
// pins, or "" for an empty chain.
func (s *State) Genesis() string {
	if len(s.members) == 0 {
		return ""
	}
	return s.members[0].Key.Fingerprint()
}

// Device returns the member with fingerprint fpr, active or revoked.
func (s *State) Device(fpr string) (*Member, bool) {
	m, ok := s.byFpr[fpr]
	return m, ok
}

// Devices returns the active device keys in the order they were added.
func (s *State) Devices() []*envelope.Key {
	var out []*envelope.Key
	for _, m := range s.members {
		if m.Active() {
			out = append(out, m.Key)
		}
	}
	return out
}

// Members returns how many devices the chain has ever added, active or
// revoked.
func (s *State) Members() int { return len(s.members) }

// Recovery returns the recovery key, or nil if the user has none.
func (s *State) Recovery() *envelope.Key { return s.recovery }

// Recipients returns every key a record for the user must be sealed to:
// the active devices, then the recovery key.
func (s *State) Recipients() []*envelope.Key {
	out := s.Devices()
	if s.recovery != nil {
		out = append(out, s.recovery)
	}
	return out
}

// Next returns the seq and prev of the link that would extend the chain.
func (s *State) Next() (seq int64, prev [32]byte) { return int64(len(s.hashes)), s.Head() }

// Apply checks that link extends the chain and applies it:
//   - its statement is a canonical keyholder-chain-link-v1 for this user,
//     with the next seq and the current head as prev;
//   - its time is not before the previous link's;
//   - the signer is an active device of the chain (for the first link:
//     the key it adds), and the signature verifies with that key;
//   - add-device and set-recovery carry the public key they add, whose
//     fingerprint and SHA-256 are the link's key and key-sha256, with no
//     private part; the key is not yet a member nor the recovery key;
//   - revoke-device names an active device other than the last one, and
//     remove-recovery the current recovery key, each with the key-sha256
//     it was added with, and carry no key.
//
// On error the state is unchanged.
func (s *State) Apply(link api.ChainLink) error {
	if s.shared {
		return errShared
	}
	n := len(s.hashes)
	stmt := []byte(link.Statement)
	l, err := statement.ParseChainLink(stmt)
	if err != nil {
		return chainErr("link %d: %v", n, err)
	}
	switch {
	case l.User != s.user:
		return chainErr("link %d is for user %s, not %s", n, l.User, s.user)
	case l.Seq != int64(n):
		return chainErr("link %d has seq %d", n, l.Seq)
	case l.Prev != s.Head():
		return chainErr("link %d does not follow link %d (prev %s, head %s)", n, n-1, short(l.Prev), short(s.Head()))
	case l.Time.Unix() < s.lastTime:
		return chainErr("link %d is dated %s, before the link it follows", n, l.Time.Format("2006-01-02T15:04:05Z"))
	}
	var added *envelope.Key
	if l.Action == statement.ActionAddDevice || l.Action == statement.ActionSetRecovery {
		if link.PublicKey == "" {
			return chainErr("link %d (%s %s) carries no public key", n, l.Action, l.Key)
		}
		var sum [32]byte
		if added, sum, err = carriedKey(link.PublicKey); err != nil {
			return chainErr("link %d: the key it adds: %v", n, err)
		}
		if added.HasPrivate() {
			return chainErr("link %d carries a private key", n)
		}
		if added.Fingerprint() != l.Key {
			return chainErr("link %d names key %s but carries %s", n, l.Key, added.Fingerprint())
		}
		if sum != l.KeySHA256 {
			return chainErr("link %d: the key %s it carries is not the one it binds (key-sha256)", n, l.Key)
		}
		if _, ok := s.byFpr[l.Key]; ok {
			return chainErr("link %d adds key %s, which the chain has already held as a device", n, l.Key)
		}
		if s.recovery != nil && s.recovery.Fingerprint() == l.Key {
			return chainErr("link %d adds key %s, which is the recovery key", n, l.Key)
		}
	} else if link.PublicKey != "" {
		return chainErr("link %d (%s) must not carry a key", n, l.Action)
	}
	// The signer.
	var signer *envelope.Key
	if n == 0 {
		if l.Action != statement.ActionAddDevice || l.Signer != l.Key {
			return chainErr("link 0 must add the first device and be signed by it")
		}
		signer = added
	} else {
		m, ok := s.byFpr[l.Signer]
		if !ok || !m.Active() {
			return chainErr("link %d is signed by %s, which is not an active device of user %s", n, l.Signer, s.user)
		}
		signer = m.Key
	}
	// The action against the state.
	switch l.Action {
	case statement.ActionRevokeDevice:
		m, ok := s.byFpr[l.Key]
		if !ok || !m.Active() {
			return chainErr("link %d revokes %s, which is not an active device", n, l.Key)
		}
		if m.KeySHA256 != l.KeySHA256 {
			return chainErr("link %d revokes %s with another key-sha256 than it was added with", n, l.Key)
		}
		if len(s.Devices()) == 1 {
			// Nobody could sign the chain again: that is a reset, which
			// the operator does and every pinned party notices.
			return chainErr("link %d revokes %s, the user's last active device", n, l.Key)
		}
	case statement.ActionRemoveRecovery:
		if s.recovery == nil || s.recovery.Fingerprint() != l.Key || s.recovHash != l.KeySHA256 {
			return chainErr("link %d removes recovery key %s, which is not the current one", n, l.Key)
		}
	}
	if err := statement.Verify(stmt, []byte(link.Signature), signer); err != nil {
		return chainErr("link %d: signature by %s: %v", n, l.Signer, err)
	}
	// Apply.
	switch l.Action {
	case statement.ActionAddDevice:
		m := &Member{Key: added, KeySHA256: l.KeySHA256, Added: l.Seq, Revoked: -1}
		s.members = append(s.members, m)
		s.byFpr[l.Key] = m
	case statement.ActionRevokeDevice:
		s.byFpr[l.Key].Revoked = l.Seq
	case statement.ActionSetRecovery:
		s.recovery, s.recovHash = added, l.KeySHA256
	case statement.ActionRemoveRecovery:
		s.recovery, s.recovHash = nil, [32]byte{}
	}
	s.hashes = append(s.hashes, LinkHash(stmt))
	s.lastTime = l.Time.Unix()
	return nil
}

// A Pin is what a party or device remembers of a user's chain: the first
// device (which the user can read off the phone and compare out of band),
// and the last link it has seen, so that a chain served later must extend
// it. A pin made by hand has only the first device (Seq -1).
type Pin struct {
	User    string `json:"user"`
	Genesis string `json:"genesis"`
	Seq     int64  `json:"seq"`
	Head    string `json:"head,omitempty"`
}

// Pin returns the pin of the chain as it is now.
func (s *State) Pin() *Pin {
	h := s.Head()
	return &Pin{User: s.user, Genesis: s.Genesis(), Seq: int64(len(s.hashes)) - 1, Head: hex.EncodeToString(h[:])}
}

// Extends reports, as a nil error, whether the chain extends p: same user,
// same first device, and (unless p is a hand pin, Seq -1) the link at p.Seq
// is the one p remembers. A chain that fails is either a fork or a replacement
// of the user's chain; only an explicit re-pin accepts it.
func (s *State) Extends(p *Pin) error {
	if p == nil {
		return nil
	}
	if p.User != s.user {
		return fmt.Errorf("%w: the pin is for user %s, the chain for %s", ErrPin, p.User, s.user)
	}
	if p.Genesis != s.Genesis() {
		return fmt.Errorf("%w: user %s's chain starts with device %s, but %s is pinned (a replaced chain: re-pin only if the user reset their devices)",
			ErrPin, s.user, s.Genesis(), p.Genesis)
	}
	if p.Seq < 0 {
		return nil
	}
	if p.Seq >= int64(len(s.hashes)) {
		return &behindErr{fmt.Sprintf("%v: user %s's chain has %d links, fewer than the %d already seen (rolled back)", ErrPin, s.user, len(s.hashes), p.Seq+1)}
	}
	h := s.hashes[p.Seq]
	if hex.EncodeToString(h[:]) != p.Head {
		return fmt.Errorf("%w: user %s's link %d is %s, not the %s already seen (a fork)", ErrPin, s.user, p.Seq, short(h), p.Head)
	}
	return nil
}

// Code returns the short code a device being added shows, and the device
// that approves it shows for the same key, so the user can compare them:
// the first 64 bits of SHA-256("keyholder-device-code-v1\n" || k.Bytes())
// as 20 decimal digits in groups of four. Finding another key with the
// same code takes about 2^64 key generations. Both sides compute it over
// Keyholder's encoding of the key (Key.Bytes), so an app on another
// OpenPGP library must write the key with new-format packet headers as
// Key.Bytes does; a code that differs is refused, never accepted.
func Code(k *envelope.Key) string {
	h := sha256.New()
	h.Write([]byte("keyholder-device-code-v1\n"))
	h.Write(k.Public().Bytes())
	sum := h.Sum(nil)
	var v uint64
	for _, b := range sum[:8] {
		v = v<<8 | uint64(b)
	}
	d := fmt.Sprintf("%020s", strconv.FormatUint(v, 10))
	var b strings.Builder
	for i := 0; i < len(d); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(d[i : i+4])
	}
	return b.String()
}

func short(h [32]byte) string { return hex.EncodeToString(h[:6]) }

// Sign makes the link that extends the chain with action on target, signed
// by signer (an unlocked device key of the user; for the first link, target
// itself), dated t (whole seconds, UTC). It does not apply the link: send
// it, and Apply it once the server has accepted it. The link carries
// target's public key for add-device and set-recovery.
func (s *State) Sign(action string, target, signer *envelope.Key, t time.Time) (api.ChainLink, error) {
	seq, prev := s.Next()
	l := statement.ChainLink{User: s.user, Seq: seq, Prev: prev, Action: action, Key: target.Fingerprint(),
		KeySHA256: KeyHash(target), Signer: signer.Fingerprint(), Time: t.UTC().Truncate(time.Second)}
	if m, ok := s.byFpr[target.Fingerprint()]; ok && action == statement.ActionRevokeDevice {
		l.KeySHA256 = m.KeySHA256
	}
	if r := s.recovery; r != nil && action == statement.ActionRemoveRecovery && r.Fingerprint() == target.Fingerprint() {
		l.KeySHA256 = s.recovHash
	}
	stmt, err := l.Marshal()
	if err != nil {
		return api.ChainLink{}, err
	}
	sig, err := statement.Sign(stmt, signer)
	if err != nil {
		return api.ChainLink{}, err
	}
	out := api.ChainLink{Statement: string(stmt), Signature: string(sig)}
	if action == statement.ActionAddDevice || action == statement.ActionSetRecovery {
		out.PublicKey = string(target.Public().Armor())
	}
	return out, nil
}

// Clone returns a copy of the state that Apply on either leaves the other
// as it is.
func (s *State) Clone() *State {
	c := &State{user: s.user, hashes: append([][32]byte(nil), s.hashes...), lastTime: s.lastTime,
		byFpr: make(map[string]*Member, len(s.byFpr)), recovery: s.recovery, recovHash: s.recovHash}
	for _, m := range s.members {
		cm := *m
		c.members = append(c.members, &cm)
		c.byFpr[cm.Key.Fingerprint()] = &cm
	}
	return c
}
