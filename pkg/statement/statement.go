package statement

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// Statements are the small texts that parties and devices sign; the
// canonical form is described at ParseStatement and specified, with an
// example of each kind, in docs/protocol.md.

// MaxStatementSize bounds the size of a statement in bytes. Real statements
// are well under 1 KiB; parsers refuse anything larger before looking at it,
// so a server can bound what it buffers.
const MaxStatementSize = 4096

// Version lines. A statement of one kind can never parse as another kind.
// The v1 submission, approval and rejection statements did not bind the
// record's key packets; they are refused by name (see retired).
const (
	submissionVersion = "keyholder-submission-v2"
	approvalVersion   = "keyholder-approval-v2"
	rejectionVersion  = "keyholder-rejection-v2"
	grantVersion      = "keyholder-grant-v1"
	challengeVersion  = "keyholder-auth-v1"
	chainLinkVersion  = "keyholder-chain-link-v1"
)

// retired are version lines this implementation no longer accepts, with
// the reason a parser gives.
var retired = map[string]string{
	"keyholder-submission-v1": "it does not bind the record's key packets; sign a keyholder-submission-v2 statement",
	"keyholder-approval-v1":   "it does not bind the record's key packets; sign a keyholder-approval-v2 statement",
	"keyholder-rejection-v1":  "it does not bind the record's key packets; sign a keyholder-rejection-v2 statement",
}

// timeLayout is the only accepted form of a time value.
const timeLayout = "2006-01-02T15:04:05Z"

type fieldKind int

const (
	kindID fieldKind = iota
	kindFingerprint
	kindSHA256
	kindSize
	kindTime
	kindPrev   // a SHA-256, or "none" for the first link of a chain
	kindAction // one of the chain link actions
	kindReason // a reason token: 1 to 64 of a-z 0-9 -
	kindRevoked
)

type fieldSpec struct {
	name string
	kind fieldKind
}

var submissionFields = []fieldSpec{
	{"user", kindID},
	{"submitter", kindFingerprint},
	{"key-packets-sha256", kindSHA256},
	{"ciphertext-sha256", kindSHA256},
	{"ciphertext-size", kindSize},
	{"metadata-sha256", kindSHA256},
}

var approvalFields = []fieldSpec{
	{"record", kindID},
	{"user", kindID},
	{"device", kindFingerprint},
	{"submitter", kindFingerprint},
	{"key-packets-sha256", kindSHA256},
	{"session-key-id", kindSHA256},
	{"ciphertext-sha256", kindSHA256},
	{"ciphertext-size", kindSize},
	{"metadata-sha256", kindSHA256},
	{"request", kindID},
	{"time", kindTime},
}

// rejectionFields: a rejection names no session key (the device may
// reject a record it cannot open) but says why.
var rejectionFields = []fieldSpec{
	{"record", kindID},
	{"user", kindID},
	{"device", kindFingerprint},
	{"submitter", kindFingerprint},
	{"key-packets-sha256", kindSHA256},
	{"ciphertext-sha256", kindSHA256},
	{"ciphertext-size", kindSize},
	{"metadata-sha256", kindSHA256},
	{"request", kindID},
	{"reason", kindReason},
	{"time", kindTime},
}

var chainLinkFields = []fieldSpec{
	{"user", kindID},
	{"seq", kindSize},
	{"prev", kindPrev},
	{"action", kindAction},
	{"key", kindFingerprint},
	{"key-sha256", kindSHA256},
	{"signer", kindFingerprint},
	{"time", kindTime},
}

var grantFields = []fieldSpec{
	{"record", kindID},
	{"grantee", kindFingerprint},
	{"key-packet-sha256", kindSHA256},
	{"purpose-sha256", kindSHA256},
	{"expires", kindTime},
	{"request", kindID},
	{"time", kindTime},
}

// challengeFields: the nonce is the server's base64url challenge, which
// fits the id form.
var challengeFields = []fieldSpec{
	{"nonce", kindID},
	{"fingerprint", kindFingerprint},
}

// Grant field positions used by the cross-field check.
const (
	grantExpiresField = 4
	grantTimeField    = 6
)

// A Submission is the statement a party signs when it uploads a record: it
// binds the party's key to the exact message it sent for a user (the key
// packets and the encrypted data packet) and to its metadata, so the server
// (at upload), the device (before approving) and every later reader can
// check that the bytes are the ones the party meant. It carries no record
// id because the server assigns one afterwards.
type Submission struct {
	// User is the id of the user the record is for.
	User string
	// Submitter is the fingerprint of the submitting party's key, the key
	// that signs this statement.
	Submitter string
	// KeyPackets is KeyPacketsDigest of the message's key packets: the
	// SHA-256 of every byte before the data packet.
	KeyPackets [32]byte
	// Ciphertext identifies the encrypted data packet (header and body),
	// which is the same bytes for every recipient.
	Ciphertext envelope.DataDigest
	// MetadataSHA256 is MetadataDigest(public, private) of the record's
	// metadata exactly as uploaded: the server passes the bytes it received,
	// never a re-encoding.
	MetadataSHA256 [32]byte
}

// An Approval is the statement a device signs to make a pending record
// valid. It repeats everything the submission bound, plus the record id,
// the device key, the session key's id and the approval request it
// answers, so the signature cannot be moved to another record, user,
// ciphertext, key packet or request. A device re-wraps a record's session
// key only from the key packets its approval binds, and only while the
// session key's id is the approved one.
type Approval struct {
	// Record is the record id the server assigned.
	Record string
	// User is the id of the user who owns the record.
	User string
	// Device is the fingerprint of the device key that signs this statement.
	Device string
	// Submitter is the fingerprint of the party key that signed the
	// submission statement.
	Submitter string
	// KeyPackets is KeyPacketsDigest of the record's key packets, as in the
	// submission.
	KeyPackets [32]byte
	// SessionKeyID is the one-way id of the record's session key (see
	// SessionKeyID): a device refuses to approve a second record with a
	// session key it has seen, and every device of the user learns the id
	// from the approval.
	SessionKeyID [32]byte
	// Ciphertext identifies the encrypted data packet, as in the submission.
	Ciphertext envelope.DataDigest
	// MetadataSHA256 is MetadataDigest of the record's metadata, as in the
	// submission.
	MetadataSHA256 [32]byte
	// Request is the id of the approval request this statement answers.
	Request string
	// Time is when the user decided. Marshal writes it in UTC and refuses
	// fractions of a second (use time.Now().Truncate(time.Second)); Parse
	// returns it in UTC.
	Time time.Time
}

// A Rejection is the statement a device signs to refuse a pending record.
// It binds what an Approval binds except the session key (a device may
// reject a record it cannot open), under its own version line so that a
// rejection can never be taken for an approval, and says why (Reason).
type Rejection struct {
	Record         string
	User           string
	Device         string
	Submitter      string
	KeyPackets     [32]byte
	Ciphertext     envelope.DataDigest
	MetadataSHA256 [32]byte
	Request        string
	// Reason is a token: the user's "declined", or one of the device's own
	// findings (the Reason constants).
	Reason string
	Time   time.Time
}

// Reasons a device gives in a rejection. A reason is any token of 1 to 64
// characters a-z 0-9 -; these are the ones Keyholder's devices write.
const (
	// ReasonDeclined: the user said no.
	ReasonDeclined = "declined"
	// ReasonSessionKeyReused: the record's session key belongs to another
	// record (its key packet was copied from that record).
	ReasonSessionKeyReused = "session-key-reused"
	// ReasonKeyPackets: the key packets served are not the ones the
	// submission binds, or the device's own packet does not open.
	ReasonKeyPackets = "key-packets"
	// ReasonSubmission: the submission statement or its signature does not
	// check.
	ReasonSubmission = "submission"
	// ReasonMetadata: the metadata is not what the device can show.
	ReasonMetadata = "metadata"
)

// Decision returns the fields a rejection shares with an approval, as an
// Approval with a zero SessionKeyID, so one check serves both.
func (r *Rejection) Decision() *Approval {
	return &Approval{Record: r.Record, User: r.User, Device: r.Device, Submitter: r.Submitter, KeyPackets: r.KeyPackets,
		Ciphertext: r.Ciphertext, MetadataSHA256: r.MetadataSHA256, Request: r.Request, Time: r.Time}
}

// A Grant is the statement a device signs when it opens one record to one
// party: it binds the new key packet (the record's session key encrypted to
// the grantee) to the record, the grantee's key, the stated purpose and an
// expiry.
type Grant struct {
	// Record is the id of the record opened.
	Record string
	// Grantee is the fingerprint of the party key the new key packet is
	// encrypted to.
	Grantee string
	// KeyPacketSHA256 is the SHA-256 of the new PKESK packet, header
	// included, exactly as uploaded.
	KeyPacketSHA256 [32]byte
	// PurposeSHA256 is PurposeDigest of the purpose text (its SHA-256 in
	// UTF-8), exactly as shown to the user.
	PurposeSHA256 [32]byte
	// Expires is when the grant stops; it must be after Time.
	Expires time.Time
	// Request is the id of the access request this statement answers.
	Request string
	// Time is when the user decided.
	Time time.Time
}

// Chain link actions.
const (
	// ActionAddDevice adds Key as a device of the user. The first link of
	// a chain adds the user's first device and is signed by that device.
	ActionAddDevice = "add-device"
	// ActionRevokeDevice removes the device Key.
	ActionRevokeDevice = "revoke-device"
	// ActionSetRecovery makes Key the user's recovery key (replacing any).
	ActionSetRecovery = "set-recovery"
	// ActionRemoveRecovery removes the recovery key Key.
	ActionRemoveRecovery = "remove-recovery"
)

// A ChainLink is one link of a user's key chain: the statement by which a
// device of the user (Signer) adds or revokes a device key, or sets or
// removes the recovery key. Each link names the SHA-256 of the previous
// link's statement, so the links form one sequence that nobody but the
// user's devices can extend; the keys a record is sealed to are the ones
// the chain makes current.
type ChainLink struct {
	// User is the id of the user whose chain this is.
	User string
	// Seq is the link's position, 0 for the first.
	Seq int64
	// Prev is the SHA-256 of the previous link's statement; zero for the
	// first link (written "none").
	Prev [32]byte
	// Action is one of the Action constants.
	Action string
	// Key is the fingerprint of the key the link adds or removes.
	Key string
	// KeySHA256 is the SHA-256 of that key's binary transferable public
	// key (Key.Bytes), so the link binds the subkeys as well.
	KeySHA256 [32]byte
	// Signer is the fingerprint of the device key that signs the link: an
	// active device of the user, or the added key itself in the first link.
	Signer string
	// Time is when the link was made.
	Time time.Time
}

// Marshal returns the canonical statement. It fails with ErrStatement if a
// field cannot be written canonically: an invalid id or fingerprint, a
// negative size, an all-zero digest (an unset field).
func (s *Submission) Marshal() ([]byte, error) {
	if s == nil {
		return nil, wrapf(ErrStatement, "nil %s", submissionVersion)
	}
	return marshalFields(submissionVersion, submissionFields, []string{
		s.User,
		s.Submitter,
		hex.EncodeToString(s.KeyPackets[:]),
		s.Ciphertext.Hex(),
		strconv.FormatInt(s.Ciphertext.Size, 10),
		hex.EncodeToString(s.MetadataSHA256[:]),
	})
}

// Marshal returns the canonical statement. It fails with ErrStatement if a
// field cannot be written canonically: an invalid id or fingerprint, a
// negative size, an all-zero digest, a zero time or one with fractions of a
// second.
func (a *Approval) Marshal() ([]byte, error) {
	if a == nil {
		return nil, wrapf(ErrStatement, "nil %s", approvalVersion)
	}
	tm, err := formatTime(approvalVersion, "time", a.Time)
	if err != nil {
		return nil, err
	}
	return marshalFields(approvalVersion, approvalFields, []string{
		a.Record,
		a.User,
		a.Device,
		a.Submitter,
		hex.EncodeToString(a.KeyPackets[:]),
		hex.EncodeToString(a.SessionKeyID[:]),
		a.Ciphertext.Hex(),
		strconv.FormatInt(a.Ciphertext.Size, 10),
		hex.EncodeToString(a.MetadataSHA256[:]),
		a.Request,
		tm,
	})
}

// Marshal returns the canonical statement, under the same rules as
// Approval.Marshal; Reason must be a token of a-z 0-9 -.
func (r *Rejection) Marshal() ([]byte, error) {
	if r == nil {
		return nil, wrapf(ErrStatement, "nil %s", rejectionVersion)
	}
	tm, err := formatTime(rejectionVersion, "time", r.Time)
	if err != nil {
		return nil, err
	}
	return marshalFields(rejectionVersion, rejectionFields, []string{
		r.Record,
		r.User,
		r.Device,
		r.Submitter,
		hex.EncodeToString(r.KeyPackets[:]),
		r.Ciphertext.Hex(),
		strconv.FormatInt(r.Ciphertext.Size, 10),
		hex.EncodeToString(r.MetadataSHA256[:]),
		r.Request,
		r.Reason,
		tm,
	})
}

// Marshal returns the canonical link statement. It fails with ErrStatement
// if a field cannot be written canonically, or if the first link (Seq 0)
// has a Prev or a later one has none.
func (l *ChainLink) Marshal() ([]byte, error) {
	if l == nil {
		return nil, wrapf(ErrStatement, "nil %s", chainLinkVersion)
	}
	tm, err := formatTime(chainLinkVersion, "time", l.Time)
	if err != nil {
		return nil, err
	}
	prev := "none"
	if l.Prev != ([32]byte{}) {
		prev = hex.EncodeToString(l.Prev[:])
	}
	if (l.Seq == 0) != (prev == "none") {
		return nil, wrapf(ErrStatement, "%s prev: the first link (seq 0), and only it, has prev none", chainLinkVersion)
	}
	return marshalFields(chainLinkVersion, chainLinkFields, []string{
		l.User,
		strconv.FormatInt(l.Seq, 10),
		prev,
		l.Action,
		l.Key,
		hex.EncodeToString(l.KeySHA256[:]),
		l.Signer,
		tm,
	})
}

// Marshal returns the canonical statement. It fails with ErrStatement if a
// field cannot be written canonically, or if Expires is not after Time.
func (g *Grant) Marshal() ([]byte, error) {
	if g == nil {
		return nil, wrapf(ErrStatement, "nil %s", grantVersion)
	}
	exp, err := formatTime(grantVersion, "expires", g.Expires)
	if err != nil {
		return nil, err
	}
	tm, err := formatTime(grantVersion, "time", g.Time)
	if err != nil {
		return nil, err
	}
	values := []string{
		g.Record,
		g.Grantee,
		hex.EncodeToString(g.KeyPacketSHA256[:]),
		hex.EncodeToString(g.PurposeSHA256[:]),
		exp,
		g.Request,
		tm,
	}
	if !g.Expires.After(g.Time) {
		return nil, wrapf(ErrStatement, "%s expires: %s is not after time %s", grantVersion, exp, tm)
	}
	return marshalFields(grantVersion, grantFields, values)
}

// formatTime writes t in the canonical form, refusing what would not
// survive a round trip.
func formatTime(version, field string, t time.Time) (string, error) {
	if t.IsZero() {
		return "", wrapf(ErrStatement, "%s %s: time is not set", version, field)
	}
	if t.Nanosecond() != 0 {
		return "", wrapf(ErrStatement, "%s %s: time %s has a fraction of a second", version, field, t.UTC().Format(time.RFC3339Nano))
	}
	return t.UTC().Format(timeLayout), nil
}

// marshalFields checks every value with the parser's own rules, so that
// whatever Marshal writes, Parse reads back.
func marshalFields(version string, spec []fieldSpec, values []string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(version)
	b.WriteByte('\n')
	for i, f := range spec {
		if msg := checkValue(f.kind, values[i]); msg != "" {
			return nil, wrapf(ErrStatement, "%s %s: %s", version, f.name, msg)
		}
		b.WriteString(f.name)
		b.WriteString(": ")
		b.WriteString(values[i])
		b.WriteByte('\n')
	}
	if b.Len() > MaxStatementSize {
		// Unreachable with the current field limits; kept so the bound
		// holds if fields are added.
		return nil, wrapf(ErrStatement, "%s is %d bytes, more than %d", version, b.Len(), MaxStatementSize)
	}
	return b.Bytes(), nil
}

// ParseSubmission reads a canonical submission statement. Any deviation
// from the canonical form is an error wrapping ErrStatement that names the
// line and field.
func ParseSubmission(b []byte) (*Submission, error) {
	v, err := parseFields(b, submissionVersion, submissionFields)
	if err != nil {
		return nil, err
	}
	return &Submission{
		User:           v[0],
		Submitter:      v[1],
		KeyPackets:     mustDigest(v[2]),
		Ciphertext:     envelope.DataDigest{SHA256: mustDigest(v[3]), Size: mustSize(v[4])},
		MetadataSHA256: mustDigest(v[5]),
	}, nil
}

// ParseApproval reads a canonical approval statement. A rejection or any
// other statement is an error: check the kind before trusting the content.
func ParseApproval(b []byte) (*Approval, error) {
	v, err := parseFields(b, approvalVersion, approvalFields)
	if err != nil {
		return nil, err
	}
	return &Approval{
		Record:         v[0],
		User:           v[1],
		Device:         v[2],
		Submitter:      v[3],
		KeyPackets:     mustDigest(v[4]),
		SessionKeyID:   mustDigest(v[5]),
		Ciphertext:     envelope.DataDigest{SHA256: mustDigest(v[6]), Size: mustSize(v[7])},
		MetadataSHA256: mustDigest(v[8]),
		Request:        v[9],
		Time:           mustTime(v[10]),
	}, nil
}

// ParseRejection reads a canonical rejection statement.
func ParseRejection(b []byte) (*Rejection, error) {
	v, err := parseFields(b, rejectionVersion, rejectionFields)
	if err != nil {
		return nil, err
	}
	return &Rejection{
		Record:         v[0],
		User:           v[1],
		Device:         v[2],
		Submitter:      v[3],
		KeyPackets:     mustDigest(v[4]),
		Ciphertext:     envelope.DataDigest{SHA256: mustDigest(v[5]), Size: mustSize(v[6])},
		MetadataSHA256: mustDigest(v[7]),
		Request:        v[8],
		Reason:         v[9],
		Time:           mustTime(v[10]),
	}, nil
}

// ParseChainLink reads a canonical chain link statement. Besides the form,
// it checks that prev is "none" exactly when seq is 0.
func ParseChainLink(b []byte) (*ChainLink, error) {
	v, err := parseFields(b, chainLinkVersion, chainLinkFields)
	if err != nil {
		return nil, err
	}
	l := &ChainLink{User: v[0], Seq: mustSize(v[1]), Action: v[3], Key: v[4], KeySHA256: mustDigest(v[5]),
		Signer: v[6], Time: mustTime(v[7])}
	if v[2] != "none" {
		l.Prev = mustDigest(v[2])
	}
	if (l.Seq == 0) != (v[2] == "none") {
		return nil, wrapf(ErrStatement, "%s line 4 (prev): the first link (seq 0), and only it, has prev none", chainLinkVersion)
	}
	return l, nil
}

// ParseGrant reads a canonical grant statement. Besides the form, it
// checks that the expiry is after the grant time.
func ParseGrant(b []byte) (*Grant, error) {
	v, err := parseFields(b, grantVersion, grantFields)
	if err != nil {
		return nil, err
	}
	g := &Grant{
		Record:          v[0],
		Grantee:         v[1],
		KeyPacketSHA256: mustDigest(v[2]),
		PurposeSHA256:   mustDigest(v[3]),
		Expires:         mustTime(v[4]),
		Request:         v[5],
		Time:            mustTime(v[6]),
	}
	if !g.Expires.After(g.Time) {
		return nil, wrapf(ErrStatement, "%s line %d (expires): %s is not after time %s",
			grantVersion, grantExpiresField+2, v[grantExpiresField], v[grantTimeField])
	}
	return g, nil
}

// A Challenge is the statement a device or party signs to log in: the
// server's single-use nonce and the fingerprint of the signing key. It is a
// statement kind of its own, so that a key signs only texts it builds
// itself and a server cannot pass off an approval as a login challenge.
type Challenge struct {
	Nonce       string
	Fingerprint string
}

// Marshal returns the canonical challenge statement.
func (c *Challenge) Marshal() ([]byte, error) {
	if c == nil {
		return nil, wrapf(ErrStatement, "nil %s", challengeVersion)
	}
	return marshalFields(challengeVersion, challengeFields, []string{c.Nonce, c.Fingerprint})
}

// ParseChallenge reads a canonical challenge statement.
func ParseChallenge(b []byte) (*Challenge, error) {
	v, err := parseFields(b, challengeVersion, challengeFields)
	if err != nil {
		return nil, err
	}
	return &Challenge{Nonce: v[0], Fingerprint: v[1]}, nil
}

// ParseStatement reads a canonical statement of any kind, chosen by its
// version line, and returns a *Submission, *Approval, *Rejection, *Grant,
// *Challenge or *ChainLink.
// It lets a verifier handle whatever it was given; a caller that expects
// one kind should use that kind's parser. Log leaves (Revocation,
// ChainReset) are not signed statements: it refuses them by name.
//
// A statement has exactly one byte sequence, so that a signature over the
// bytes means one thing and `gpg --verify` can check it: UTF-8 text (ASCII
// in practice), a version line (keyholder-submission-v2,
// keyholder-approval-v2, keyholder-rejection-v2, keyholder-grant-v1,
// keyholder-auth-v1 or keyholder-chain-link-v1; the v1 submission, approval
// and rejection are refused with the reason),
// then one "name: value" line per field in the kind's fixed order, with one
// space after the colon, every line ended by LF, nothing after the last
// line, at most MaxStatementSize bytes. Field values:
//
//	record, user, request,   1 to 64 of A-Z a-z 0-9 _ -
//	nonce
//	device, submitter,       OpenPGP fingerprint: 40 (v4) or 64 (v6)
//	grantee, key, signer       upper-case hex digits
//	*-sha256, session-key-id 64 lower-case hex digits, not all zero
//	prev                     "none" (seq 0 only) or as *-sha256
//	ciphertext-size, seq     decimal, no sign, no leading zero (except "0"),
//	                           at most 2^63-1
//	action                   add-device, revoke-device, set-recovery or
//	                           remove-recovery
//	reason                   1 to 64 of a-z 0-9 -
//	time, expires            RFC 3339 in UTC with "Z", whole seconds, years
//	                           1970 to 9999: 2026-11-27T03:04:05Z
//
// Anything else is an error wrapping ErrStatement that names the line and
// the field: an unknown, duplicate, missing or misplaced field, CR, an
// empty line, extra or missing spaces, invalid UTF-8, a missing final
// newline, a non-canonical number, digest or time.
func ParseStatement(b []byte) (any, error) {
	if err := checkFraming(b, "statement"); err != nil {
		return nil, err
	}
	first := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		first = b[:i]
	}
	var s any
	var err error
	// Each case assigns a typed pointer; on error, return a plain nil, not
	// a typed nil inside the interface.
	switch string(first) {
	case submissionVersion:
		s, err = ParseSubmission(b)
	case approvalVersion:
		s, err = ParseApproval(b)
	case rejectionVersion:
		s, err = ParseRejection(b)
	case grantVersion:
		s, err = ParseGrant(b)
	case challengeVersion:
		s, err = ParseChallenge(b)
	case chainLinkVersion:
		s, err = ParseChainLink(b)
	default:
		if why, ok := retired[string(first)]; ok {
			return nil, wrapf(ErrStatement, "statement line 1: %s is no longer accepted: %s", first, why)
		}
		if leaves[string(first)] {
			return nil, wrapf(ErrStatement, "statement line 1: %s is a log leaf, not a signed statement", first)
		}
		return nil, wrapf(ErrStatement, "statement line 1: unknown statement version %s", quote(string(first)))
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// parseFields checks the framing of b and every line against spec, and
// returns the field values in order.
func parseFields(b []byte, version string, spec []fieldSpec) ([]string, error) {
	if err := checkFraming(b, version); err != nil {
		return nil, err
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if lines[0] != version {
		if why, ok := retired[lines[0]]; ok {
			return nil, wrapf(ErrStatement, "%s line 1: %s is no longer accepted: %s", version, lines[0], why)
		}
		return nil, wrapf(ErrStatement, "%s line 1: version line is %s", version, quote(lines[0]))
	}
	values := make([]string, len(spec))
	for i, f := range spec {
		n := i + 2 // line number of field i
		if n > len(lines) {
			return nil, wrapf(ErrStatement, "%s line %d (%s): missing field %q", version, n, f.name, f.name)
		}
		line := lines[n-1]
		if line == "" {
			return nil, wrapf(ErrStatement, "%s line %d (%s): empty line", version, n, f.name)
		}
		name, value, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, wrapf(ErrStatement, "%s line %d (%s): want %q, got %s", version, n, f.name, f.name+": <value>", quote(line))
		}
		if name != f.name {
			return nil, wrapf(ErrStatement, "%s line %d (%s): %s", version, n, f.name, misplaced(spec, i, name))
		}
		if msg := checkValue(f.kind, value); msg != "" {
			return nil, wrapf(ErrStatement, "%s line %d (%s): %s", version, n, f.name, msg)
		}
		values[i] = value
	}
	if len(lines) > len(spec)+1 {
		n := len(spec) + 2
		line := lines[n-1]
		what := "unexpected line after the last field"
		if line == "" {
			what = "empty line after the last field"
		} else if name, _, ok := strings.Cut(line, ": "); ok && fieldIndex(spec, name) >= 0 {
			what = fmt.Sprintf("duplicate field %q after the last field", name)
		}
		return nil, wrapf(ErrStatement, "%s line %d: %s: %s", version, n, what, quote(line))
	}
	return values, nil
}

// checkFraming enforces what holds for the whole text: size, UTF-8, LF
// line endings and the final newline. version labels the error messages.
func checkFraming(b []byte, version string) error {
	if len(b) == 0 {
		return wrapf(ErrStatement, "%s: empty statement", version)
	}
	if len(b) > MaxStatementSize {
		return wrapf(ErrStatement, "%s: statement is %d bytes, more than %d", version, len(b), MaxStatementSize)
	}
	if !utf8.Valid(b) {
		off := 0
		for off < len(b) {
			r, size := utf8.DecodeRune(b[off:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			off += size
		}
		return wrapf(ErrStatement, "%s line %d: invalid UTF-8 at byte %d", version, lineOf(b, off), off)
	}
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		return wrapf(ErrStatement, "%s line %d: carriage return (statements use LF line endings only)", version, lineOf(b, i))
	}
	if b[len(b)-1] != '\n' {
		return wrapf(ErrStatement, "%s line %d: missing final newline", version, lineOf(b, len(b)-1))
	}
	return nil
}

// lineOf returns the 1-based line number of byte offset off.
func lineOf(b []byte, off int) int {
	return bytes.Count(b[:off], []byte{'\n'}) + 1
}

// misplaced explains why name, found where spec[i] belongs, is wrong.
func misplaced(spec []fieldSpec, i int, name string) string {
	j := fieldIndex(spec, name)
	switch {
	case j < 0:
		return fmt.Sprintf("unknown field %s, want %q", quote(name), spec[i].name)
	case j < i:
		return fmt.Sprintf("duplicate field %q, want %q", name, spec[i].name)
	default:
		return fmt.Sprintf("field %q out of order, want %q", name, spec[i].name)
	}
}

func fieldIndex(spec []fieldSpec, name string) int {
	for i, f := range spec {
		if f.name == name {
			return i
		}
	}
	return -1
}

// checkValue returns "" if v is the canonical form of a value of kind k,
// or else what is wrong with it.
func checkValue(k fieldKind, v string) string {
	switch k {
	case kindID:
		if v == "" || len(v) > 64 {
			return fmt.Sprintf("id must be 1 to 64 characters, got %d", len(v))
		}
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
				return fmt.Sprintf("id %s has a character outside A-Z a-z 0-9 _ -", quote(v))
			}
		}
	case kindFingerprint:
		if len(v) != 40 && len(v) != 64 {
			return fmt.Sprintf("fingerprint must be 40 or 64 upper-case hex digits, got %s", quote(v))
		}
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
				return fmt.Sprintf("fingerprint must be upper-case hex, got %s", quote(v))
			}
		}
	case kindSHA256:
		if len(v) != 64 {
			return fmt.Sprintf("SHA-256 must be 64 lower-case hex digits, got %s", quote(v))
		}
		zero := true
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return fmt.Sprintf("SHA-256 must be lower-case hex, got %s", quote(v))
			}
			zero = zero && c == '0'
		}
		if zero {
			return "SHA-256 is all zero (an unset digest)"
		}
	case kindSize:
		if v == "" || len(v) > 19 {
			return fmt.Sprintf("size must be 1 to 19 decimal digits, got %s", quote(v))
		}
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return fmt.Sprintf("size must be decimal digits without sign, got %s", quote(v))
			}
		}
		if len(v) > 1 && v[0] == '0' {
			return fmt.Sprintf("size has a leading zero: %s", quote(v))
		}
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Sprintf("size %s does not fit in 63 bits", quote(v))
		}
	case kindTime:
		t, err := time.Parse(timeLayout, v)
		if err != nil || t.Format(timeLayout) != v {
			return fmt.Sprintf("time must be RFC 3339 UTC with Z and whole seconds (2006-01-02T15:04:05Z), got %s", quote(v))
		}
		if y := t.Year(); y < 1970 || y > 9999 {
			return fmt.Sprintf("time %s is outside the years 1970 to 9999", v)
		}
	case kindPrev:
		if v == "none" {
			return ""
		}
		if msg := checkValue(kindSHA256, v); msg != "" {
			return `prev must be "none" or a SHA-256: ` + msg
		}
	case kindAction:
		switch v {
		case ActionAddDevice, ActionRevokeDevice, ActionSetRecovery, ActionRemoveRecovery:
		default:
			return fmt.Sprintf("action must be add-device, revoke-device, set-recovery or remove-recovery, got %s", quote(v))
		}
	case kindReason:
		if v == "" || len(v) > 64 {
			return fmt.Sprintf("reason must be 1 to 64 characters, got %d", len(v))
		}
		for i := 0; i < len(v); i++ {
			c := v[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Sprintf("reason %s has a character outside a-z 0-9 -", quote(v))
			}
		}
	case kindRevoked:
		if v != RevokedGrant {
			return fmt.Sprintf("kind must be grant, got %s", quote(v))
		}
	default:
		return "internal error: unknown field kind"
	}
	return ""
}

// The must* helpers convert values that checkValue has accepted.

func mustDigest(v string) [32]byte {
	var d [32]byte
	if _, err := hex.Decode(d[:], []byte(v)); err != nil {
		panic("statement: unchecked digest " + v)
	}
	return d
}

func mustSize(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		panic("statement: unchecked size " + v)
	}
	return n
}

func mustTime(v string) time.Time {
	t, err := time.Parse(timeLayout, v)
	if err != nil {
		panic("statement: unchecked time " + v)
	}
	return t.UTC()
}

// quote returns v quoted for an error message, shortened if long.
func quote(v string) string {
	const max = 80
	if len(v) > max {
		return strconv.Quote(v[:max]) + "..."
	}
	return strconv.Quote(v)
}
