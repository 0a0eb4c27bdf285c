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
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// Request kinds.
const (
	KindApproval = "approval"
	KindAccess   = "access"
)

// A CheckedRequest is a device request whose contents the device has
// checked (see CheckRequest): what it may show the user and sign.
type CheckedRequest struct {
	Detail       *api.RequestDetail
	Profile      envelope.Profile
	KeyPacket    *envelope.KeyPacket
	Submission   *envelope.Submission
	SubmitterKey *envelope.Key
	Metadata     api.Metadata
	// Private is the decrypted private metadata (nil if none was sent).
	Private *PrivateMetadata
	// RequesterKey is the key an access request asks a grant for.
	RequesterKey *envelope.Key
}

// CheckRequest checks a request before a device shows it and answers it:
//   - its own key packet opens with its key (the record is really for it);
//   - the submitter's signature over the submission statement verifies with
//     the submitter's key, whose fingerprint is the announced one;
//   - the statement's user, submitter, ciphertext SHA-256 and size and
//     metadata digest are those of the request (so what the device shows and
//     signs is what the submitter signed);
//   - for an access request: the requester's key has the announced
//     fingerprint, and the request carries the record's approval, which
//     verifies with this device's key whenever the statement or the server
//     names this device.
//
// The device never sees the record body: the submitter's signed ciphertext
// hash, checked by the server at upload and by every reader at open, ties
// the approval to the bytes.
func CheckRequest(d *api.RequestDetail, id *Identity) (*CheckedRequest, error) {
	cr := &CheckedRequest{Detail: d}
	if d.Kind != KindApproval && d.Kind != KindAccess {
		return nil, verifyErr("unknown request kind %q", d.Kind)
	}
	p, err := envelope.ParseProfile(d.Profile)
	if err != nil {
		return nil, verifyErr("%v", err)
	}
	cr.Profile = p
	if cr.KeyPacket, err = envelope.ParseKeyPacket(d.KeyPacket); err != nil {
		return nil, verifyErr("key packet: %v", err)
	}
	if err := envelope.CanOpen(cr.KeyPacket, p, id.Key); err != nil {
		return nil, verifyErr("the record's key packet does not open with this device's key: %v", err)
	}
	if cr.SubmitterKey, err = envelope.ParseKey([]byte(d.SubmitterKey)); err != nil {
		return nil, verifyErr("submitter key: %v", err)
	}
	if cr.SubmitterKey.Fingerprint() != d.SubmitterFingerprint {
		return nil, verifyErr("the submitter key is %s, not the announced %s", cr.SubmitterKey.Fingerprint(), d.SubmitterFingerprint)
	}
	stmt := []byte(d.SubmissionStatement)
	if cr.Submission, err = envelope.ParseSubmission(stmt); err != nil {
		return nil, verifyErr("submission statement: %v", err)
	}
	if err := envelope.Verify(stmt, []byte(d.SubmissionSignature), cr.SubmitterKey); err != nil {
		return nil, verifyErr("submission signature: %v", err)
	}
	s := cr.Submission
	switch {
	case s.User != d.UserID:
		return nil, verifyErr("the submission is for user %s, the request for %s", s.User, d.UserID)
	case s.Submitter != d.SubmitterFingerprint:
		return nil, verifyErr("the submission was signed for submitter %s, not %s", s.Submitter, d.SubmitterFingerprint)
	case s.Ciphertext.Hex() != d.CiphertextSHA256 || s.Ciphertext.Size != d.CiphertextSize:
		return nil, verifyErr("the submission covers another ciphertext than the request shows")
	case s.MetadataSHA256 != envelope.MetadataDigest([]byte(d.Metadata), d.Private):
		return nil, verifyErr("the submission covers other metadata than the request shows")
	}
	if err := json.Unmarshal([]byte(d.Metadata), &cr.Metadata); err != nil {
		return nil, verifyErr("metadata: %v", err)
	}
	if len(d.Private) > 0 {
		r, err := envelope.Open(bytes.NewReader(d.Private), id.Key)
		if err != nil {
			return nil, verifyErr("private metadata does not open: %v", err)
		}
		b, err := io.ReadAll(io.LimitReader(r, api.MaxPrivateSize))
		if err != nil {
			return nil, verifyErr("private metadata: %v", err)
		}
		var pm PrivateMetadata
		if err := json.Unmarshal(b, &pm); err != nil {
			return nil, verifyErr("private metadata: %v", err)
		}
		cr.Private = &pm
	}
	if d.Kind == KindAccess {
		if cr.RequesterKey, err = envelope.ParseKey([]byte(d.RequesterKey)); err != nil {
			return nil, verifyErr("requester key: %v", err)
		}
		if cr.RequesterKey.Fingerprint() != d.RequesterFingerprint {
			return nil, verifyErr("the requester key is %s, not the announced %s", cr.RequesterKey.Fingerprint(), d.RequesterFingerprint)
		}
		// The approval is checked whenever it names this device, whatever
		// approval_device the server sends, so the server cannot switch
		// the check off. An approval by another device of the user cannot
		// be verified here (its key is not at hand); it must at least be
		// the one the server names.
		if d.ApprovalStatement == "" || d.ApprovalSignature == "" {
			return nil, verifyErr("the access request carries no approval of record %s", d.RecordID)
		}
		a, err := envelope.ParseApproval([]byte(d.ApprovalStatement))
		if err != nil {
			return nil, verifyErr("approval statement: %v", err)
		}
		if a.Device != id.Fingerprint() && d.ApprovalDevice != id.Fingerprint() {
			if a.Device != d.ApprovalDevice {
				return nil, verifyErr("the approval is signed for device %s, the request names %s", a.Device, d.ApprovalDevice)
			}
		} else {
			rec := &api.Record{ID: d.RecordID, UserID: d.UserID, State: "approved", CiphertextSHA256: d.CiphertextSHA256,
				CiphertextSize: d.CiphertextSize, MetadataSHA256: hex.EncodeToString(s.MetadataSHA256[:]),
				DecisionStatement: d.ApprovalStatement, DecisionSignature: d.ApprovalSignature, DeviceFingerprint: d.ApprovalDevice,
				SubmissionStatement: d.SubmissionStatement}
			if _, err := VerifyApproval(rec, id.Key); err != nil {
				return nil, err
			}
		}
	}
	return cr, nil
}

// statementTime is now in UTC, whole seconds, as statements require.
func statementTime() time.Time { return time.Now().UTC().Truncate(time.Second) }

func (cr *CheckedRequest) decision(id *Identity) envelope.Approval {
	return envelope.Approval{Record: cr.Detail.RecordID, User: cr.Detail.UserID, Device: id.Fingerprint(),
		Submitter: cr.Submission.Submitter, Ciphertext: cr.Submission.Ciphertext, MetadataSHA256: cr.Submission.MetadataSHA256,
		Request: cr.Detail.ID, Time: statementTime()}
}

// ApproveRequest signs the approval statement of a checked submission and
// sends it.
func (c *Client) ApproveRequest(ctx context.Context, cr *CheckedRequest) (*api.AnswerResponse, error) {
	if cr.Detail.Kind != KindApproval {
		return nil, errors.New("not an approval request")
	}
	a := cr.decision(c.id)
	stmt, err := a.Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := envelope.Sign(stmt, c.id.Key)
	if err != nil {
		return nil, err
	}
	return c.Approve(ctx, cr.Detail.ID, stmt, sig)
}

// RejectRequest signs the rejection statement of a checked submission and
// sends it.
func (c *Client) RejectRequest(ctx context.Context, cr *CheckedRequest) (*api.AnswerResponse, error) {
	if cr.Detail.Kind != KindApproval {
		return nil, errors.New("not an approval request")
	}
	r := envelope.Rejection(cr.decision(c.id))
	stmt, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := envelope.Sign(stmt, c.id.Key)
	if err != nil {
		return nil, err
	}
	return c.Reject(ctx, cr.Detail.ID, stmt, sig)
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
	kp, err := envelope.Rewrap(cr.KeyPacket, cr.Profile, c.id.Key, cr.RequesterKey)
	if err != nil {
		return nil, err
	}
	now := statementTime()
	g := envelope.Grant{Record: d.RecordID, Grantee: d.RequesterFingerprint, KeyPacketSHA256: sha256.Sum256(kp),
		PurposeSHA256: envelope.PurposeDigest(d.Purpose), Expires: expires.UTC().Truncate(time.Second), Request: d.ID, Time: now}
	if !g.Expires.After(now) {
		return nil, fmt.Errorf("the grant would expire at once (%s)", g.Expires.Format(time.RFC3339))
	}
	stmt, err := g.Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := envelope.Sign(stmt, c.id.Key)
	if err != nil {
		return nil, err
	}
	return c.Grant(ctx, d.ID, kp, stmt, sig)
}
