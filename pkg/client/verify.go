package client

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// ErrVerification reports a statement or signature that does not check.
var ErrVerification = errors.New("verification failed")

func verifyErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrVerification, fmt.Sprintf(format, args...))
}

// VerifyApproval checks offline that rec carries an approval statement
// signed by device that binds exactly this record: id, user, device, key
// packets digest, ciphertext SHA-256 and size, metadata digest, and the
// submitter of the submission statement when the record carries one.
// Whether device is one of the user's devices is the caller's question:
// take it from the user's verified key chain (Client.UserChain).
func VerifyApproval(rec *api.Record, device *envelope.Key) (*statement.Approval, error) {
	if rec.State != api.RecordApproved {
		return nil, verifyErr("record %s is %s, not approved", rec.ID, rec.State)
	}
	if rec.DecisionStatement == "" || rec.DecisionSignature == "" {
		return nil, verifyErr("record %s carries no approval statement", rec.ID)
	}
	a, err := statement.ParseApproval([]byte(rec.DecisionStatement))
	if err != nil {
		return nil, verifyErr("approval statement: %v", err)
	}
	var bad []string
	if a.Record != rec.ID {
		bad = append(bad, "record")
	}
	if a.User != rec.UserID {
		bad = append(bad, "user")
	}
	if a.Device != device.Fingerprint() || (rec.DeviceFingerprint != "" && a.Device != rec.DeviceFingerprint) {
		bad = append(bad, "device")
	}
	if hex.EncodeToString(a.KeyPackets[:]) != rec.KeyPacketsSHA256 {
		bad = append(bad, "key-packets-sha256")
	}
	if a.Ciphertext.Hex() != rec.CiphertextSHA256 {
		bad = append(bad, "ciphertext-sha256")
	}
	if a.Ciphertext.Size != rec.CiphertextSize {
		bad = append(bad, "ciphertext-size")
	}
	if hex.EncodeToString(a.MetadataSHA256[:]) != rec.MetadataSHA256 {
		bad = append(bad, "metadata-sha256")
	}
	if rec.SubmissionStatement != "" {
		sub, err := statement.ParseSubmission([]byte(rec.SubmissionStatement))
		if err != nil {
			return nil, verifyErr("submission statement: %v", err)
		}
		if sub.Submitter != a.Submitter {
			bad = append(bad, "submitter")
		}
		if sub.Ciphertext != a.Ciphertext || sub.MetadataSHA256 != a.MetadataSHA256 || sub.User != a.User || sub.KeyPackets != a.KeyPackets {
			bad = append(bad, "submission")
		}
	}
	if len(bad) > 0 {
		return nil, verifyErr("approval statement of record %s differs in: %s", rec.ID, strings.Join(bad, ", "))
	}
	if err := statement.Verify([]byte(rec.DecisionStatement), []byte(rec.DecisionSignature), device); err != nil {
		return nil, verifyErr("approval signature: %v", err)
	}
	return a, nil
}

// VerifyGrant checks offline that g is a grant of record recordID to the
// key grantee (a fingerprint), signed by device, over exactly g's key
// packet and purpose.
func VerifyGrant(g *api.Grant, recordID, grantee string, device *envelope.Key) (*statement.Grant, error) {
	if g.Statement == "" || g.Signature == "" {
		return nil, verifyErr("grant %s carries no statement", g.ID)
	}
	st, err := statement.ParseGrant([]byte(g.Statement))
	if err != nil {
		return nil, verifyErr("grant statement: %v", err)
	}
	var bad []string
	if st.Record != recordID || g.RecordID != recordID {
		bad = append(bad, "record")
	}
	if st.Grantee != grantee {
		bad = append(bad, "grantee")
	}
	if st.KeyPacketSHA256 != sha256.Sum256(g.KeyPacket) {
		bad = append(bad, "key-packet-sha256")
	}
	if st.PurposeSHA256 != statement.PurposeDigest(g.Purpose) {
		bad = append(bad, "purpose-sha256")
	}
	if g.RequestID != "" && st.Request != g.RequestID {
		bad = append(bad, "request")
	}
	if len(bad) > 0 {
		return nil, verifyErr("grant statement %s differs in: %s", g.ID, strings.Join(bad, ", "))
	}
	if err := statement.Verify([]byte(g.Statement), []byte(g.Signature), device); err != nil {
		return nil, verifyErr("grant signature: %v", err)
	}
	return st, nil
}
