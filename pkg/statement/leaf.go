package statement

import (
	"strconv"
	"time"
)

// Log leaves are texts in the canonical statement form that the server
// appends to the transparency log for acts no device signs. They are never
// signed: Sign, Verify and ParseStatement refuse them.
const (
	revocationVersion = "keyholder-revocation-v1"
	chainResetVersion = "keyholder-chain-reset-v1"
)

// leaves are the version lines of log leaves, which ParseStatement refuses
// by name.
var leaves = map[string]bool{revocationVersion: true, chainResetVersion: true}

var revocationFields = []fieldSpec{
	{"kind", kindRevoked},
	{"id", kindID},
	{"fingerprint", kindFingerprint},
	{"time", kindTime},
}

var chainResetFields = []fieldSpec{
	{"user", kindID},
	{"epoch", kindSize},
	{"time", kindTime},
}

// What a Revocation revokes.
const (
	// RevokedGrant: a grant, revoked by its user's device; ID is the grant
	// id and Fingerprint the grantee's key.
	RevokedGrant = "grant"
)

// A Revocation is the log leaf the server appends when a grant is revoked.
// It is not signed: the device's request to revoke is authenticated, and
// the leaf records that the server stopped serving the grant.
type Revocation struct {
	// Kind is what was revoked: RevokedGrant.
	Kind string
	// ID is the id of what was revoked.
	ID string
	// Fingerprint is the key it was for: the grantee's.
	Fingerprint string
	// Time is when it was revoked, in whole seconds.
	Time time.Time
}

// Marshal returns the canonical leaf. It fails with ErrStatement if a
// field cannot be written canonically (see Approval.Marshal for times).
func (r *Revocation) Marshal() ([]byte, error) {
	if r == nil {
		return nil, wrapf(ErrStatement, "nil %s", revocationVersion)
	}
	tm, err := formatTime(revocationVersion, "time", r.Time)
	if err != nil {
		return nil, err
	}
	return marshalFields(revocationVersion, revocationFields, []string{r.Kind, r.ID, r.Fingerprint, tm})
}

// ParseRevocation reads a canonical revocation leaf.
func ParseRevocation(b []byte) (*Revocation, error) {
	v, err := parseFields(b, revocationVersion, revocationFields)
	if err != nil {
		return nil, err
	}
	return &Revocation{Kind: v[0], ID: v[1], Fingerprint: v[2], Time: mustTime(v[3])}, nil
}

// A ChainReset is the log leaf of an operator's reset of a user's key
// chain: the chain of epoch Epoch-1 ends, and the next link the server
// accepts is the first link (seq 0) of epoch Epoch. It is not signed: it
// is the operator's act, which no device of the user can sign (they are
// lost), and which every party and device that pinned the old chain sees
// as a replaced chain.
type ChainReset struct {
	// User is the id of the user whose chain was reset.
	User string
	// Epoch is the new epoch, 1 or more.
	Epoch int64
	// Time is when the chain was reset, in whole seconds.
	Time time.Time
}

// Marshal returns the canonical leaf. It fails with ErrStatement if a
// field cannot be written canonically or Epoch is not positive.
func (r *ChainReset) Marshal() ([]byte, error) {
	if r == nil {
		return nil, wrapf(ErrStatement, "nil %s", chainResetVersion)
	}
	if r.Epoch < 1 {
		return nil, wrapf(ErrStatement, "%s epoch: %d is not 1 or more", chainResetVersion, r.Epoch)
	}
	tm, err := formatTime(chainResetVersion, "time", r.Time)
	if err != nil {
		return nil, err
	}
	return marshalFields(chainResetVersion, chainResetFields, []string{r.User, strconv.FormatInt(r.Epoch, 10), tm})
}

// ParseChainReset reads a canonical chain reset leaf. Besides the form, it
// checks that the epoch is 1 or more.
func ParseChainReset(b []byte) (*ChainReset, error) {
	v, err := parseFields(b, chainResetVersion, chainResetFields)
	if err != nil {
		return nil, err
	}
	r := &ChainReset{User: v[0], Epoch: mustSize(v[1]), Time: mustTime(v[2])}
	if r.Epoch < 1 {
		return nil, wrapf(ErrStatement, "%s line 3 (epoch): %s is not 1 or more", chainResetVersion, v[1])
	}
	return r, nil
}
