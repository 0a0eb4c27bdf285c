package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// Request kinds.
const (
	KindApproval = "approval"
	KindAccess   = "access"
	KindDevice   = "device"
)

// A CheckedRequest is a device request whose contents the device has
// checked (see CheckRequest): what it may show the user and sign.
type CheckedRequest struct {
	Detail  *api.RequestDetail
	Profile envelope.Profile
	// KeyPacket is the device's own key packet, one of the record's
	// KeyPackets, whose digest (KeyPacketsSHA256) the submission binds.
	KeyPacket        *envelope.KeyPacket
	KeyPacketsSHA256 [32]byte
	// SessionKeyID is the one-way id of the record's session key,
	// recovered from KeyPacket with the device key.
	SessionKeyID [32]byte
	Submission   *statement.Submission
	SubmitterKey *envelope.Key
	Metadata     api.Metadata
	// Private is the decrypted private metadata (nil if none was sent).
	Private *PrivateMetadata
	// RequesterKey is the key an access request asks a grant for.
	RequesterKey *envelope.Key
	// Approval is the record's approval an access request was checked
	// against, and ApprovalKey the chain device that signed it.
	Approval    *statement.Approval
	ApprovalKey *envelope.Key
	// Chain is the user's verified key chain the request was checked
	// against; NewDevice the key a device request asks to add.
	Chain     *keychain.State
	NewDevice *envelope.Key
}

// A CheckError is a request that failed the device's checks. Reason is
// the token a rejection of the record states (statement.Reason*).
type CheckError struct {
	Reason string
	Err    error
}

func (e *CheckError) Error() string { return e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

func checkErr(reason, format string, args ...any) error {
	return &CheckError{Reason: reason, Err: verifyErr(format, args...)}
}

// ReasonOf returns the rejection reason of a failed check, or "" if err
// is not a CheckError.
func ReasonOf(err error) string {
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

// Check checks the device's own key chain as OwnChain does (the chain the
// request's detail carries, else the one GET /v1/device/chain serves),
// checks the request against it (CheckRequest) and, for an approval, asks the server which
// other records of the user were approved with the request's session key
// (learning those approvals a device on the chain signed). A submission
// that passes claims its session key in the device's index at once,
// before the user decides: a second record with the same session key is
// then refused (a *CheckError with reason session-key-reused), whichever
// of the two is approved, and even if the first is never approved.
func (c *Client) Check(ctx context.Context, d *api.RequestDetail) (*CheckedRequest, error) {
	ch, err := c.ownChain(ctx, d.Chain)
	if err != nil {
		return nil, err
	}
	cr, err := CheckRequest(d, c.id, ch)
	if err != nil {
		return nil, err
	}
	if d.Kind == KindApproval {
		if err := c.learnSessionKey(ctx, cr, ch); err != nil {
			return nil, err
		}
		if err := c.claimSessionKey(cr); err != nil {
			return nil, err
		}
	}
	return cr, nil
}

// learnSessionKey asks the server for the user's records approved with
// cr's session key (the record list filtered by api.QuerySessionKeyID: one
// indexed read, whatever the user's history). The first approval of
// another record that a device on the chain signed, naming that key, goes
// into the index and refuses cr (a *CheckError, session-key-reused). It
// learns what any device approved, this one through another client
// included. A server that ignores the filter lists the newest records
// instead, which are checked the same way.
func (c *Client) learnSessionKey(ctx context.Context, cr *CheckedRequest, ch *keychain.State) error {
	var out api.RecordList
	q := url.Values{api.QuerySessionKeyID: {hex.EncodeToString(cr.SessionKeyID[:])}}
	if err := c.doJSON(ctx, http.MethodGet, api.PathDeviceRecords+"?"+q.Encode(), authKey, nil, &out); err != nil {
		return err
	}
	for i := range out.Records {
		r := &out.Records[i]
		if r.State != api.RecordApproved || r.ID == cr.Detail.RecordID {
			continue
		}
		a, err := c.verifiedApproval(r, ch)
		if err != nil || a.SessionKeyID != cr.SessionKeyID {
			continue // not an approval the chain signed, or another key
		}
		if err := c.rememberApproval(a); err != nil && !errors.Is(err, ErrSessionKeyReused) {
			return err
		}
		// Whatever the index held (this record may have claimed the
		// key when it was checked before the other was approved).
		return &CheckError{Reason: statement.ReasonSessionKeyReused,
			Err: fmt.Errorf("%w: %w: record %s's key packet holds the session key of record %s, which is approved", ErrVerification, ErrSessionKeyReused, cr.Detail.RecordID, a.Record)}
	}
	return nil
}

// verifiedApproval returns r's approval if a device on ch signed it.
func (c *Client) verifiedApproval(r *api.Record, ch *keychain.State) (*statement.Approval, error) {
	a, err := statement.ParseApproval([]byte(r.DecisionStatement))
	if err != nil {
		return nil, err
	}
	key, err := chainDevice(ch, a.Device)
	if err != nil {
		return nil, err
	}
	return VerifyApproval(r, key)
}

// CheckRequest checks a request before a device shows it and answers it.
// ch is the user's key chain as the device verified it (Client.OwnChain).
//
// For a record (approval and access requests):
//   - the record's key packets are served in full, the device's own is one
//     of them byte for byte, and it opens with the device key (the record
//     is really for it), giving the session key's id;
//   - the submitter's signature over the submission statement verifies with
//     the submitter's key, whose fingerprint is the announced one;
//   - the statement's user, submitter, key packets digest, ciphertext
//     SHA-256 and size and metadata digest are those of the request (so what
//     the device shows and signs is what the submitter signed);
//   - for an access request: the requester's key has the announced
//     fingerprint, and the request carries the record's approval, signed by
//     a device on the chain, binding this record, these key packets and the
//     very session key the device's packet holds. A key packet swapped in
//     from another record fails here, so the device never re-wraps a
//     session key in another record's name.
//
// For a device request: the new key parses, is public, and is not on the
// chain yet.
//
// A failure is a *CheckError wrapping ErrVerification, with the reason a
// rejection would state.
//
// The device never sees the record body: the submitter's signed ciphertext
// hash, checked by the server at upload and by every reader at open, ties
// the approval to the bytes.
func CheckRequest(d *api.RequestDetail, id *Identity, ch *keychain.State) (*CheckedRequest, error) {
	cr := &CheckedRequest{Detail: d, Chain: ch}
	if ch == nil || ch.User() != d.UserID {
		return nil, checkErr(statement.ReasonSubmission, "the request is for user %s, not this device's user", d.UserID)
	}
	if d.Kind == KindDevice {
		k, err := envelope.ParseKey([]byte(d.NewDeviceKey))
		if err != nil {
			return nil, checkErr(statement.ReasonKeyPackets, "new device key: %v", err)
		}
		if k.HasPrivate() || k.Fingerprint() != d.NewDeviceFingerprint {
			return nil, checkErr(statement.ReasonKeyPackets, "the new device key is not the announced %s", d.NewDeviceFingerprint)
		}
		if _, ok := ch.Device(k.Fingerprint()); ok {
			return nil, checkErr(statement.ReasonKeyPackets, "key %s is already on the chain", k.Fingerprint())
		}
		cr.NewDevice = k
		return cr, nil
	}
	if d.Kind != KindApproval && d.Kind != KindAccess {
		return nil, verifyErr("unknown request kind %q", d.Kind)
	}
	if !api.IDPattern.MatchString(d.ID) || !api.IDPattern.MatchString(d.RecordID) {
		return nil, verifyErr("the request or record id is not an id")
	}
	p, err := envelope.ParseProfile(d.Profile)
	if err != nil {
		return nil, checkErr(statement.ReasonKeyPackets, "%v", err)
	}
	cr.Profile = p
	if err := cr.checkKeyPackets(id); err != nil {
		return nil, err
	}
	if cr.SubmitterKey, err = parsedKeys.Parse([]byte(d.SubmitterKey)); err != nil {
		return nil, checkErr(statement.ReasonSubmission, "submitter key: %v", err)
	}
	if cr.SubmitterKey.Fingerprint() != d.SubmitterFingerprint {
		return nil, checkErr(statement.ReasonSubmission, "the submitter key is %s, not the announced %s", cr.SubmitterKey.Fingerprint(), d.SubmitterFingerprint)
	}
	stmt := []byte(d.SubmissionStatement)
	if cr.Submission, err = statement.ParseSubmission(stmt); err != nil {
		return nil, checkErr(statement.ReasonSubmission, "submission statement: %v", err)
	}
	if err := statement.Verify(stmt, []byte(d.SubmissionSignature), cr.SubmitterKey); err != nil {
		return nil, checkErr(statement.ReasonSubmission, "submission signature: %v", err)
	}
	s := cr.Submission
	switch {
	case s.User != d.UserID:
		return nil, checkErr(statement.ReasonSubmission, "the submission is for user %s, the request for %s", s.User, d.UserID)
	case s.Submitter != d.SubmitterFingerprint:
		return nil, checkErr(statement.ReasonSubmission, "the submission was signed for submitter %s, not %s", s.Submitter, d.SubmitterFingerprint)
	case s.KeyPackets != cr.KeyPacketsSHA256:
		return nil, checkErr(statement.ReasonKeyPackets, "the submission binds other key packets than the request serves")
	case s.Ciphertext.Hex() != d.CiphertextSHA256 || s.Ciphertext.Size != d.CiphertextSize:
		return nil, checkErr(statement.ReasonSubmission, "the submission covers another ciphertext than the request shows")
	case s.MetadataSHA256 != statement.MetadataDigest([]byte(d.Metadata), d.Private):
		return nil, checkErr(statement.ReasonSubmission, "the submission covers other metadata than the request shows")
	}
	if err := api.CheckJSON([]byte(d.Metadata)); err != nil {
		return nil, checkErr(statement.ReasonMetadata, "metadata: %v", err)
	}
	if err := json.Unmarshal([]byte(d.Metadata), &cr.Metadata); err != nil {
		return nil, checkErr(statement.ReasonMetadata, "metadata: %v", err)
	}
	if len(d.Private) > 0 {
		r, err := envelope.Open(bytes.NewReader(d.Private), id.Key)
		if err != nil {
			return nil, checkErr(statement.ReasonMetadata, "private metadata does not open: %v", err)
		}
		b, err := io.ReadAll(io.LimitReader(r, api.MaxPrivateSize))
		if err != nil {
			return nil, checkErr(statement.ReasonMetadata, "private metadata: %v", err)
		}
		if err := api.CheckJSON(b); err != nil {
			return nil, checkErr(statement.ReasonMetadata, "private metadata: %v", err)
		}
		var pm PrivateMetadata
		if err := json.Unmarshal(b, &pm); err != nil {
			return nil, checkErr(statement.ReasonMetadata, "private metadata is not the JSON {\"title\",\"filename\"}: %v", err)
		}
		cr.Private = &pm
	}
	if d.Kind == KindAccess {
		if err := cr.checkAccess(); err != nil {
			return nil, err
		}
	}
	return cr, nil
}

// checkKeyPackets finds the device's own packet among the record's and
// recovers the session key's id from it.
func (cr *CheckedRequest) checkKeyPackets(id *Identity) error {
	d := cr.Detail
	if len(d.KeyPackets) == 0 {
		return checkErr(statement.ReasonKeyPackets, "the request does not serve the record's key packets")
	}
	kps := make([]*envelope.KeyPacket, len(d.KeyPackets))
	own := -1
	for i, raw := range d.KeyPackets {
		kp, err := envelope.ParseKeyPacket(raw)
		if err != nil {
			return checkErr(statement.ReasonKeyPackets, "key packet %d: %v", i, err)
		}
		kps[i] = kp
		if bytes.Equal(raw, d.KeyPacket) {
			own = i
		}
	}
	if own < 0 {
		return checkErr(statement.ReasonKeyPackets, "the device's key packet is not one of the record's")
	}
	cr.KeyPacket = kps[own]
	cr.KeyPacketsSHA256 = envelope.KeyPacketsDigest(kps)
	skid, err := envelope.SessionKeyID(cr.KeyPacket, cr.Profile, id.Key)
	if err != nil {
		return checkErr(statement.ReasonKeyPackets, "the record's key packet does not open with this device's key: %v", err)
	}
	cr.SessionKeyID = skid
	return nil
}

// parsedKeys holds the submitter and requester keys CheckRequest parsed:
// a device checks the same parties' keys request after request, and
// parsing one verifies its self-signatures (see envelope.KeyCache).
var parsedKeys = envelope.NewKeyCache(1024)

// checkAccess checks the requester's key and the record's approval: signed
// by a device on the chain, for this record, these key packets and this
// session key.
func (cr *CheckedRequest) checkAccess() error {
	d := cr.Detail
	var err error
	if cr.RequesterKey, err = parsedKeys.Parse([]byte(d.RequesterKey)); err != nil {
		return verifyErr("requester key: %v", err)
	}
	if cr.RequesterKey.Fingerprint() != d.RequesterFingerprint {
		return verifyErr("the requester key is %s, not the announced %s", cr.RequesterKey.Fingerprint(), d.RequesterFingerprint)
	}
	if d.ApprovalStatement == "" || d.ApprovalSignature == "" {
		return verifyErr("the access request carries no approval of record %s", d.RecordID)
	}
	a, err := statement.ParseApproval([]byte(d.ApprovalStatement))
	if err != nil {
		return verifyErr("approval statement: %v", err)
	}
	key, err := chainDevice(cr.Chain, a.Device)
	if err != nil {
		return err
	}
	s := cr.Submission
	rec := &api.Record{ID: d.RecordID, UserID: d.UserID, State: api.RecordApproved, CiphertextSHA256: d.CiphertextSHA256,
		CiphertextSize: d.CiphertextSize, MetadataSHA256: hex.EncodeToString(s.MetadataSHA256[:]),
		KeyPacketsSHA256: hex.EncodeToString(cr.KeyPacketsSHA256[:]), DecisionStatement: d.ApprovalStatement,
		DecisionSignature: d.ApprovalSignature, SubmissionStatement: d.SubmissionStatement}
	if cr.Approval, err = VerifyApproval(rec, key); err != nil {
		return err
	}
	if cr.Approval.SessionKeyID != cr.SessionKeyID {
		return verifyErr("the key packet served for record %s holds another session key than its approval binds", d.RecordID)
	}
	cr.ApprovalKey = key
	return nil
}

// statementTime is now in UTC, whole seconds, as statements require.
func statementTime() time.Time { return time.Now().UTC().Truncate(time.Second) }

// ErrSessionKeyReused reports a record whose session key the device knows
// from another record: its key packet was copied from that record.
var ErrSessionKeyReused = errors.New("the record's session key belongs to another record")

// A SessionKeyIndex is the device's memory of the session keys it has
// seen approved: session key id → record id. A device keeps it for as long
// as it lives (on disk: device-sim's is a file), so it never approves or
// re-wraps one record's session key in another record's name. Record
// returns "" for an unknown id.
type SessionKeyIndex interface {
	Record(id [32]byte) (string, error)
	Remember(id [32]byte, record string) error
}

// WithSessionKeys gives a device client its session key index. Without
// one, the client keeps one in memory, which protects only for as long as
// the process lives.
func WithSessionKeys(idx SessionKeyIndex) Option { return func(c *Client) { c.sessionKeys = idx } }

// MemorySessionKeys is a SessionKeyIndex in memory.
type MemorySessionKeys struct {
	mu sync.Mutex
	m  map[[32]byte]string
}

func (m *MemorySessionKeys) Record(id [32]byte) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[id], nil
}

func (m *MemorySessionKeys) Remember(id [32]byte, record string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[[32]byte]string{}
	}
	if _, ok := m.m[id]; !ok {
		m.m[id] = record
	}
	return nil
}

// claimSessionKey checks that the request's session key is unknown or
// this record's, and remembers it for this record.
func (c *Client) claimSessionKey(cr *CheckedRequest) error {
	rec, err := c.sessionKeys.Record(cr.SessionKeyID)
	if err != nil {
		return fmt.Errorf("reading the session key index: %w", err)
	}
	if rec != "" && rec != cr.Detail.RecordID {
		return &CheckError{Reason: statement.ReasonSessionKeyReused,
			Err: fmt.Errorf("%w: %w: record %s's key packet holds the session key of record %s", ErrVerification, ErrSessionKeyReused, cr.Detail.RecordID, rec)}
	}
	return c.sessionKeys.Remember(cr.SessionKeyID, cr.Detail.RecordID)
}

// LearnSessionKeys adds to the device's index the session key ids of the
// user's approved records, from approvals signed by devices on the chain,
// so a device learns what the user's other devices approved. It returns
// the number of approvals newly taken in (each is read once per Client),
// and an error naming both records if two approved records share a
// session key. It sees the records the server lists (the newest 1000):
// a server that hides an approval from it is what the transparency log
// will expose.
func (c *Client) LearnSessionKeys(ctx context.Context, ch *keychain.State) (int, error) {
	recs, err := c.DeviceRecords(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range recs {
		r := &recs[i]
		if r.State != api.RecordApproved || c.learnt(r.ID) {
			continue
		}
		a, err := c.verifiedApproval(r, ch)
		if err != nil {
			continue
		}
		if err := c.rememberApproval(a); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// rememberApproval takes a verified approval's session key id into the
// index: a second record approved with the same session key is
// ErrSessionKeyReused.
func (c *Client) rememberApproval(a *statement.Approval) error {
	known, err := c.sessionKeys.Record(a.SessionKeyID)
	if err != nil {
		return err
	}
	if known != "" && known != a.Record {
		return fmt.Errorf("%w: records %s and %s were both approved with one session key", ErrSessionKeyReused, known, a.Record)
	}
	if err := c.sessionKeys.Remember(a.SessionKeyID, a.Record); err != nil {
		return err
	}
	c.markLearnt(a.Record)
	return nil
}

// learnt reports whether LearnSessionKeys has taken record's approval in.
func (c *Client) learnt(record string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.learned[record]
}

func (c *Client) markLearnt(record string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.learned == nil {
		c.learned = map[string]bool{}
	}
	c.learned[record] = true
}

func (cr *CheckedRequest) approval(id *Identity) *statement.Approval {
	s := cr.Submission
	return &statement.Approval{Record: cr.Detail.RecordID, User: cr.Detail.UserID, Device: id.Fingerprint(),
		Submitter: s.Submitter, KeyPackets: cr.KeyPacketsSHA256, SessionKeyID: cr.SessionKeyID, Ciphertext: s.Ciphertext,
		MetadataSHA256: s.MetadataSHA256, Request: cr.Detail.ID, Time: statementTime()}
}

// ApproveRequest signs the approval statement of a checked submission and
// sends it. It first asks the server again for records approved with the
// same session key and claims the key in the device's index: a record
// whose session key another approved record holds, or the device knows
// from another record, is not approved (a *CheckError with reason
// session-key-reused; reject it).
func (c *Client) ApproveRequest(ctx context.Context, cr *CheckedRequest) (*api.AnswerResponse, error) {
	if cr.Detail.Kind != KindApproval {
		return nil, errors.New("not an approval request")
	}
	// Asked again: a request may stay on screen for minutes, in which
	// another record with its session key may have been approved.
	if cr.Chain != nil {
		if err := c.learnSessionKey(ctx, cr, cr.Chain); err != nil {
			return nil, err
		}
	}
	if err := c.claimSessionKey(cr); err != nil {
		return nil, err
	}
	stmt, sig, err := signStatement(cr.approval(c.id), c.id)
	if err != nil {
		return nil, err
	}
	return c.Approve(ctx, cr.Detail.ID, stmt, sig)
}

// RejectRequest signs a rejection of the record an approval request asks
// about, stating reason (statement.ReasonDeclined when the user said no,
// or ReasonOf the failed check), and sends it. It needs only the request
// detail, so a record that failed CheckRequest can be rejected too.
func (c *Client) RejectRequest(ctx context.Context, d *api.RequestDetail, reason string) (*api.AnswerResponse, error) {
	if d.Kind != KindApproval {
		return nil, errors.New("not an approval request")
	}
	r := &statement.Rejection{Record: d.RecordID, User: d.UserID, Device: c.id.Fingerprint(), Submitter: d.SubmitterFingerprint,
		MetadataSHA256: statement.MetadataDigest([]byte(d.Metadata), d.Private), Request: d.ID, Reason: reason, Time: statementTime()}
	if n, err := hex.Decode(r.Ciphertext.SHA256[:], []byte(d.CiphertextSHA256)); err != nil || n != 32 {
		return nil, fmt.Errorf("the request's ciphertext_sha256 is not a SHA-256")
	}
	r.Ciphertext.Size = d.CiphertextSize
	h := sha256.New()
	for _, kp := range d.KeyPackets {
		h.Write(kp)
	}
	h.Sum(r.KeyPackets[:0])
	stmt, sig, err := signStatement(r, c.id)
	if err != nil {
		return nil, err
	}
	return c.Reject(ctx, d.ID, stmt, sig)
}

func signStatement(m interface{ Marshal() ([]byte, error) }, id *Identity) ([]byte, []byte, error) {
	stmt, err := m.Marshal()
	if err != nil {
		return nil, nil, err
	}
	sig, err := statement.Sign(stmt, id.Key)
	if err != nil {
		return nil, nil, err
	}
	return stmt, sig, nil
}

// GrantRequest rewraps the record's session key to the requester's key,
// signs the grant statement and sends both. A zero expires takes the
// expiry the requester asked for; a later one is cut to it.
func (c *Client) GrantRequest(ctx context.Context, cr *CheckedRequest, expires time.Time) (*api.AnswerResponse, error) {
	d := cr.Detail
	if d.Kind != KindAccess || cr.RequesterKey == nil {
		return nil, errors.New("not an access request")
	}
	if d.GrantExpires != nil && (expires.IsZero() || expires.After(*d.GrantExpires)) {
		expires = *d.GrantExpires
	}
	if expires.IsZero() {
		return nil, errors.New("no grant expiry")
	}
	if cr.Approval == nil || cr.Approval.SessionKeyID != cr.SessionKeyID {
		return nil, errors.New("the request was not checked against the record's approval")
	}
	// A rewrap to a key that cannot receive the profile fails (compat) or,
	// worse, makes a grant its holder cannot open (modern): ask first,
	// before the session key is claimed. It is a failed check of the
	// request (the device refuses it), not an error to retry.
	if err := cr.RequesterKey.CanReceive(cr.Profile); err != nil {
		return nil, fmt.Errorf("%w: the requester's key cannot receive this record: %w", ErrVerification, err)
	}
	if err := c.claimSessionKey(cr); err != nil {
		return nil, err
	}
	kp, err := envelope.Rewrap(cr.KeyPacket, cr.Profile, c.id.Key, cr.RequesterKey)
	if err != nil {
		return nil, err
	}
	now := statementTime()
	g := statement.Grant{Record: d.RecordID, Grantee: d.RequesterFingerprint, KeyPacketSHA256: sha256.Sum256(kp),
		PurposeSHA256: statement.PurposeDigest(d.Purpose), Expires: expires.UTC().Truncate(time.Second), Request: d.ID, Time: now}
	if !g.Expires.After(now) {
		return nil, fmt.Errorf("the grant would expire at once (%s)", g.Expires.Format(time.RFC3339))
	}
	stmt, sig, err := signStatement(&g, c.id)
	if err != nil {
		return nil, err
	}
	return c.Grant(ctx, d.ID, kp, stmt, sig)
}
