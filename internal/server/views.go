package server

import (
	"context"
	"errors"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
)

// The views: how the handlers turn path parameters into ids and store rows
// into API objects. They do not query the database, except findUser and
// the record views, which look up what they render in one query.

// pathID returns the ":id" path parameter if it has the form of an id;
// anything else is a 404 without touching the database.
func pathID(c echo.Context, what string) (string, error) {
	id := c.Param("id")
	if !store.ValidID(id) {
		return "", notFound(what)
	}
	return id, nil
}

// notFoundAs turns the store's ErrNotFound into the 404 problem for what.
func notFoundAs(what string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(what)
	}
	return err
}

// findUser loads user id through db (a read or a transaction), or returns
// the 404 problem.
func findUser(db *gorm.DB, id string) (*store.User, error) {
	u, err := store.UserByID(db, id)
	if err != nil {
		return nil, notFoundAs("user", err)
	}
	return u, nil
}

// recordJSON renders a record; deciderFpr is the fingerprint of the device
// that decided it (if any); withSubmission adds the submission statement.
func recordJSON(r *store.Record, deciderFpr string, withSubmission bool) api.Record {
	out := api.Record{ID: r.ID, UserID: r.UserID, State: api.RecordState(r.State), Profile: r.Profile, SubmitterID: r.PartyID,
		CiphertextSHA256: r.CiphertextSHA256, CiphertextSize: r.Size, Metadata: string(r.Metadata),
		MetadataSHA256: r.MetadataSHA256, KeyPacketsSHA256: r.KeyPacketsSHA256, Created: r.CreatedAt.UTC(),
		DecisionStatement: string(r.DecisionStatement), DecisionSignature: string(r.DecisionSignature),
		DeviceFingerprint: deciderFpr}
	if r.DecidedAt != nil {
		t := r.DecidedAt.UTC()
		out.Decided = &t
	}
	if withSubmission {
		out.SubmissionStatement, out.SubmissionSignature = string(r.SubmissionStatement), string(r.SubmissionSignature)
	}
	return out
}

// recordView renders one record with its submission statement, looking up
// the fingerprint of the device that decided it.
func (s *Server) recordView(ctx context.Context, r *store.Record) api.Record {
	return recordJSON(r, s.deviceFingerprint(ctx, r.DecidedBy), true)
}

// recordList renders a list of records, with the fingerprints of the
// devices that decided them looked up in one query.
func (s *Server) recordList(ctx context.Context, rs []store.Record) (api.RecordList, error) {
	ids := make([]string, len(rs))
	for i := range rs {
		ids[i] = rs[i].DecidedBy
	}
	fprs, err := s.st.DeviceFingerprints(ctx, ids...)
	if err != nil {
		return api.RecordList{}, err
	}
	out := api.RecordList{Records: make([]api.Record, 0, len(rs))}
	for i := range rs {
		out.Records = append(out.Records, recordJSON(&rs[i], fprs[rs[i].DecidedBy], false))
	}
	return out, nil
}

// deviceFingerprint returns device id's fingerprint, or "" if there is no
// such device (or no id).
func (s *Server) deviceFingerprint(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	fprs, err := s.st.DeviceFingerprints(ctx, id)
	if err != nil {
		return ""
	}
	return fprs[id]
}

func grantJSON(g *store.Grant, fpr, devFpr string, full bool) api.Grant {
	out := api.Grant{ID: g.ID, RecordID: g.RecordID, UserID: g.UserID, GranteeID: g.PartyID, GranteeFP: fpr, RequestID: g.RequestID,
		Purpose: g.Purpose, Expires: g.ExpiresAt.UTC(), Created: g.CreatedAt.UTC(), DeviceFingerprint: devFpr}
	if g.RevokedAt != nil {
		t := g.RevokedAt.UTC()
		out.Revoked = &t
	}
	if full {
		out.KeyPacket, out.Statement, out.Signature = g.KeyPacket, string(g.Statement), string(g.Signature)
	}
	return out
}

func deviceJSON(d store.Device) api.Device {
	out := api.Device{ID: d.ID, UserID: d.UserID, Fingerprint: d.Fingerprint, Status: d.Status, PushKind: d.PushKind,
		PushDead: d.PushDead, Created: d.CreatedAt.UTC()}
	if d.RevokedAt != nil {
		t := d.RevokedAt.UTC()
		out.Revoked = &t
	}
	return out
}
