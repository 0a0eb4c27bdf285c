package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// openRequests returns the open, unexpired requests the device can answer
// (a page of them, oldest first): those of its user whose record holds a
// key packet for it, and the user's device requests (link requests), which
// every active device of the user can answer.
func (s *Server) openRequests(ctx context.Context, d *store.Device, p store.Page) ([]store.Request, *store.Cursor, error) {
	return s.st.OpenRequestsForDevice(ctx, d.UserID, d.ID, s.now(), p)
}

func (s *Server) deviceListRequests(c echo.Context) error {
	p, err := pageOf(c)
	if err != nil {
		return err
	}
	qs, next, err := s.openRequests(c.Request().Context(), deviceOf(c), p)
	if err != nil {
		return err
	}
	out := api.RequestList{Requests: make([]api.RequestSummary, 0, len(qs)), NextCursor: nextCursor(next)}
	for _, q := range qs {
		out.Requests = append(out.Requests, api.RequestSummary{ID: q.ID, Kind: q.Kind, RecordID: q.RecordID, Created: q.CreatedAt.UTC(), Expires: q.ExpiresAt.UTC()})
	}
	return c.JSON(http.StatusOK, out)
}

// requestContext is what the server knows about a request, loaded for a
// device of the request's user.
type requestContext struct {
	req       store.Request
	rec       store.Record
	submitter store.Party
	requester store.Party // access requests
	keyPacket store.RecordKeyPacket
	// keyPackets are all of the record's key packets in message order
	// (their ids are in upload order).
	keyPackets []store.RecordKeyPacket
	pending    store.PendingDevice // device requests
}

// loadRequest loads request id for device d. The request must be of d's
// user and its record must hold a key packet for d (a device request has
// no record: any device of the user may answer it); otherwise it is a 404,
// so nobody learns about another user's requests.
//
// forAnswer is set by the answering routes: the request must then still be
// open and unexpired, else 409 (already-answered or expired). That includes
// the tombstone of a rejected or expired record, whose key packets are
// deleted: its request exists for d's user, so a further answer is a 409,
// not a 404.
func (s *Server) loadRequest(ctx context.Context, d *store.Device, id string, forAnswer bool) (*requestContext, error) {
	var rc requestContext
	// By id alone, then the user: given "id = ? AND user_id = ?", PostgreSQL
	// may plan the user_id index for a table it has no statistics for yet,
	// and keep that plan on a pooled connection, reading all of the user's
	// requests on every lookup. The record, its parties and its key packets
	// come with the request, in one query; a device request has none.
	rr, err := s.st.FindRecordRequest(ctx, id)
	if err == nil {
		rc.req, rc.rec, rc.submitter, rc.keyPackets = rr.Request, rr.Record, rr.Submitter, rr.KeyPackets
		if rc.req.Kind == store.KindAccess {
			rc.requester = rr.Requester
		}
	} else if errors.Is(err, store.ErrNotFound) {
		var q *store.Request
		if q, err = s.st.FindRequest(ctx, id); err == nil {
			rc.req = *q
			if q.Kind != store.KindDevice {
				err = store.ErrNotFound // its record or a party is gone
			}
		}
	}
	if err == nil && rc.req.UserID != d.UserID {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, notFoundAs("request", err)
	}
	if rc.req.Kind == store.KindDevice {
		pd, err := s.st.FindPendingDevice(ctx, rc.req.ID)
		if err != nil {
			return nil, notFoundAs("request", err)
		}
		rc.pending = *pd
		if forAnswer {
			if err := requestClosed(&rc.req, nil, s.now()); err != nil {
				return nil, err
			}
		}
		return &rc, nil
	}
	// The record's packets (one per device, and the recovery key's) came
	// with it, read in the same statement, so a rejection or expiry that
	// took them has also made the record a tombstone. d's packet is found
	// among them, not by "record_id = ? AND device_id = ?", for the reason
	// above: that may be planned on the device_id index and read all of
	// d's packets.
	found := false
	for i := range rc.keyPackets {
		if rc.keyPackets[i].DeviceID == d.ID {
			rc.keyPacket, found = rc.keyPackets[i], true
			break
		}
	}
	if !found {
		if forAnswer && isTombstone(rc.rec.State) {
			if err := requestClosed(&rc.req, &rc.rec, s.now()); err != nil {
				return nil, err
			}
			return nil, stateConflict(rc.rec.State)
		}
		return nil, notFound("request") // not addressed to this device
	}
	if forAnswer {
		if err := requestClosed(&rc.req, &rc.rec, s.now()); err != nil {
			return nil, err
		}
	}
	return &rc, nil
}

// isTombstone reports whether a record in this state has lost its
// ciphertext, key packets and private metadata.
func isTombstone(state string) bool {
	return state == store.StateRejected || state == store.StateExpired
}

// requestClosed returns the 409 for a request that can no longer be
// answered (answered already, or expired even if the sweeper has not
// marked it yet), or nil while it is open.
func requestClosed(q *store.Request, r *store.Record, now time.Time) error {
	switch {
	case q.State == store.RequestAnswered:
		detail := "the request has been answered already"
		if q.Answer != "" {
			detail += " (" + q.Answer + ")"
		}
		return problem(http.StatusConflict, api.ProblemAlreadyAnswered, "Request already answered", detail)
	case q.State == store.RequestExpired || !now.Before(q.ExpiresAt):
		return problem(http.StatusConflict, api.ProblemExpired, "Request expired", "the request has expired")
	case r != nil && r.State == store.StateExpired:
		return stateConflict(r.State)
	}
	return nil
}

// stateConflict is the 409 for a record no longer in the state an answer needs.
func stateConflict(state string) error {
	if state == store.StateExpired {
		return problem(http.StatusConflict, api.ProblemExpired, "Record expired", "the record has expired")
	}
	return problem(http.StatusConflict, api.ProblemAlreadyAnswered, "Request already answered", "the record is "+state)
}

func (s *Server) deviceGetRequest(c echo.Context) error {
	id, err := pathID(c, "request")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	rc, err := s.loadRequest(ctx, deviceOf(c), id, false)
	if err != nil {
		return err
	}
	// The user's chain goes with the request: the device checks one
	// against the other, and would otherwise ask for it (issue 11).
	u, ds, links, err := s.st.UserKeys(ctx, deviceOf(c).UserID)
	if err != nil {
		return err
	}
	chain := userKeysJSON(u, links, ds)
	q, r := &rc.req, &rc.rec
	c.Response().Header().Set("Cache-Control", "no-store")
	if q.Kind == store.KindDevice {
		return c.JSON(http.StatusOK, api.RequestDetail{ID: q.ID, Kind: q.Kind, State: api.RequestState(q.State), UserID: q.UserID,
			Created: q.CreatedAt.UTC(), Expires: q.ExpiresAt.UTC(),
			NewDeviceKey: string(rc.pending.PublicKey), NewDeviceFingerprint: rc.pending.Fingerprint, Chain: &chain})
	}
	out := api.RequestDetail{ID: q.ID, Kind: q.Kind, State: api.RequestState(q.State), RecordID: r.ID, UserID: r.UserID, Profile: r.Profile,
		Created: q.CreatedAt.UTC(), Expires: q.ExpiresAt.UTC(),
		SubmitterFingerprint: rc.submitter.Fingerprint, SubmitterKey: string(rc.submitter.PublicKey), SubmitterName: rc.submitter.Name,
		Metadata: string(r.Metadata), Private: r.Private, CiphertextSHA256: r.CiphertextSHA256, CiphertextSize: r.Size,
		KeyPacket: rc.keyPacket.Packet, SubmissionStatement: string(r.SubmissionStatement), SubmissionSignature: string(r.SubmissionSignature),
		Chain: &chain}
	for _, kp := range rc.keyPackets {
		out.KeyPackets = append(out.KeyPackets, kp.Packet)
	}
	if q.Kind == store.KindAccess {
		out.RequesterFingerprint, out.RequesterKey, out.RequesterName = rc.requester.Fingerprint, string(rc.requester.PublicKey), rc.requester.Name
		out.Purpose = q.Purpose
		if q.GrantExpires != nil {
			t := q.GrantExpires.UTC()
			out.GrantExpires = &t
		}
		out.ApprovalStatement, out.ApprovalSignature = string(r.DecisionStatement), string(r.DecisionSignature)
		out.ApprovalDevice = s.deviceFingerprint(ctx, r.DecidedBy)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) checkTime(t time.Time) error {
	now := s.now()
	if t.Before(now.Add(-s.cfg.ClockSkew)) || t.After(now.Add(s.cfg.ClockSkew)) {
		return unprocessable(api.ProblemBadStatement, "Statement time out of range",
			fmt.Sprintf("the statement time must be within %s of the server's clock", s.cfg.ClockSkew))
	}
	return nil
}

// digestOf returns the record's stored digests: ciphertext, metadata, key
// packets.
func digestOf(r *store.Record) (d envelope.DataDigest, meta, kps [32]byte, err error) {
	if n, err := hex.Decode(d.SHA256[:], []byte(r.CiphertextSHA256)); err != nil || n != 32 {
		return d, meta, kps, fmt.Errorf("stored digest of record %s is damaged", r.ID)
	}
	if n, err := hex.Decode(meta[:], []byte(r.MetadataSHA256)); err != nil || n != 32 {
		return d, meta, kps, fmt.Errorf("stored metadata digest of record %s is damaged", r.ID)
	}
	if n, err := hex.Decode(kps[:], []byte(r.KeyPacketsSHA256)); err != nil || n != 32 {
		return d, meta, kps, fmt.Errorf("stored key packets digest of record %s is damaged", r.ID)
	}
	d.Size = r.Size
	return d, meta, kps, nil
}

// checkDecision compares a decision statement with what the server knows.
func (s *Server) checkDecision(got *statement.Approval, rc *requestContext, d *store.Device) error {
	dig, meta, kps, err := digestOf(&rc.rec)
	if err != nil {
		return err
	}
	var bad []string
	if got.Record != rc.rec.ID {
		bad = append(bad, "record")
	}
	if got.User != rc.rec.UserID {
		bad = append(bad, "user")
	}
	if got.Device != d.Fingerprint {
		bad = append(bad, "device")
	}
	if got.Submitter != rc.submitter.Fingerprint {
		bad = append(bad, "submitter")
	}
	if got.KeyPackets != kps {
		bad = append(bad, "key-packets-sha256")
	}
	if got.Ciphertext.SHA256 != dig.SHA256 {
		bad = append(bad, "ciphertext-sha256")
	}
	if got.Ciphertext.Size != dig.Size {
		bad = append(bad, "ciphertext-size")
	}
	if got.MetadataSHA256 != meta {
		bad = append(bad, "metadata-sha256")
	}
	if got.Request != rc.req.ID {
		bad = append(bad, "request")
	}
	if len(bad) > 0 {
		return unprocessable(api.ProblemBadStatement, "Statement does not match the request", "fields that differ: "+strings.Join(bad, ", "))
	}
	return s.checkTime(got.Time)
}

func (s *Server) deviceApprove(c echo.Context) error { return s.decide(c, true) }
func (s *Server) deviceReject(c echo.Context) error  { return s.decide(c, false) }

// answered writes the answer queued in tx (with its audit events and log
// entries), or, if the request or its record is no longer open or the
// device no longer active, returns the error that says why (whyClosed).
func answered(tx *store.Tx, rc *requestContext, deviceID string) error {
	err := tx.Flush()
	switch {
	case errors.Is(err, store.ErrUnchanged):
		return whyClosed(tx, rc, deviceID)
	case store.IsUniqueViolation(err):
		// On PostgreSQL a grant that lost the race to answer its request
		// can meet the winner's grant in the unique index on request_id
		// before its guard's count fails the statement.
		return problem(http.StatusConflict, api.ProblemAlreadyAnswered, "Request already answered", "the request has been answered already")
	}
	return err
}

// whyClosed returns the error for an answer that found its request (or
// its record, or its device) changed since it was read: 401 for a device
// revoked meanwhile; 409 for a request answered or expired, or its record
// decided or expired. It reads without locking (an answer on PostgreSQL
// runs outside a transaction, store.Change; inside one, a guarded UPDATE
// that changed nothing may still hold the row it found changed, and
// locking the other row could close a cycle with another answer).
func whyClosed(tx *store.Tx, rc *requestContext, deviceID string) error {
	if d, err := tx.Device(deviceID); err != nil || d.Status != store.DeviceActive {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return unauthorized("the device is revoked")
	}
	q, err := tx.Request(rc.req.ID)
	if err != nil {
		return err
	}
	r, err := tx.Record(rc.rec.ID)
	if err != nil {
		return err
	}
	if err := requestClosed(q, r, tx.Now()); err != nil {
		return err
	}
	return stateConflict(r.State)
}

// loadAnswer is the start of every answer to a request: the request id in
// the path, the body (decode), and the open request of the device's user,
// which must be of one of kinds.
func (s *Server) loadAnswer(c echo.Context, kinds []string, decode func() error) (*store.Device, *requestContext, error) {
	id, err := pathID(c, "request")
	if err != nil {
		return nil, nil, err
	}
	if err := decode(); err != nil {
		return nil, nil, err
	}
	d := deviceOf(c)
	rc, err := s.loadRequest(c.Request().Context(), d, id, true)
	if err != nil {
		return nil, nil, err
	}
	if !slices.Contains(kinds, rc.req.Kind) {
		switch rc.req.Kind {
		case store.KindAccess:
			return nil, nil, conflict("this request asks for access: answer it with grant or refuse")
		case store.KindDevice:
			return nil, nil, conflict("this request asks to add a device: answer it with link or refuse")
		}
		return nil, nil, conflict("this request asks for an approval: answer it with approve or reject")
	}
	// An approval request needs its record pending; an access request,
	// approved (which is final: the answer need not check it again).
	want := store.StatePending
	if rc.req.Kind == store.KindAccess {
		want = store.StateApproved
	}
	if rc.req.Kind != store.KindDevice && rc.rec.State != want {
		return nil, nil, stateConflict(rc.rec.State)
	}
	return d, rc, nil
}

func (s *Server) decide(c echo.Context, approve bool) error {
	var body api.AnswerRequest
	d, rc, err := s.loadAnswer(c, []string{store.KindApproval}, func() error { return decodeJSON(c, 64<<10, &body) })
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	stmt := []byte(body.Statement)
	var parsed *statement.Approval
	if approve {
		parsed, err = statement.ParseApproval(stmt)
	} else {
		var rj *statement.Rejection
		if rj, err = statement.ParseRejection(stmt); err == nil {
			parsed = rj.Decision()
		}
	}
	if err != nil {
		return unprocessable(api.ProblemBadStatement, "Invalid statement", err.Error())
	}
	if err := s.checkDecision(parsed, rc, d); err != nil {
		return err
	}
	if err := s.verifyDevice(d, stmt, []byte(body.Signature)); err != nil {
		return err
	}
	answer, state, action := store.AnswerApproved, store.StateApproved, "record.approve"
	if !approve {
		answer, state, action = store.AnswerRejected, store.StateRejected, "record.reject"
	}
	blobKey := rc.rec.BlobKey
	err = s.st.Change(ctx, deviceActor(d), func(tx *store.Tx) error {
		// The record first, then its request: the order the sweeper's
		// expiry locks them in. A rejected record keeps its row (state,
		// statements) as a tombstone; ciphertext, key packets and private
		// metadata go.
		if err := tx.DecidePendingRecord(rc.rec.ID, store.Decision{State: state, Statement: stmt, Signature: []byte(body.Signature), DeviceID: d.ID,
			UserID: rc.rec.UserID, SessionKeyID: hex.EncodeToString(parsed.SessionKeyID[:])}); err != nil {
			return err
		}
		if err := tx.AnswerOpenRequest(rc.req.ID, answer, d.ID); err != nil {
			return err
		}
		tx.Audit("request.answer", "request", rc.req.ID)
		tx.Audit(action, "record", rc.rec.ID)
		kind := store.LogApproval
		if !approve {
			kind = store.LogRejection
		}
		leaf, err := transparency.SignedLeaf(stmt, []byte(body.Signature))
		if err != nil {
			return err
		}
		tx.AppendLog(kind, leaf)
		if !approve && blobKey != nil {
			k := *blobKey
			tx.AfterCommit(func() { s.deleteBlob(k) })
		}
		return answered(tx, rc, d.ID)
	})
	if err != nil {
		return err
	}
	s.metrics.decided.WithLabelValues(state).Inc()
	s.wake(decidedKey(rc.rec.ID), rc.rec.ID)
	return c.JSON(http.StatusOK, api.AnswerResponse{RequestID: rc.req.ID, State: api.RequestAnswered, Answer: api.Answer(answer), RecordID: rc.rec.ID})
}

// blobLock is the store lock key of a blob.
func blobLock(key string) string { return "blob:" + key }

// deleteBlob removes a ciphertext no record refers to any more. The check
// and the deletion run under the blob's lock, which an upload of the same
// bytes holds from its own check until its row commits, so a blob is never
// deleted from under a record that is being committed.
func (s *Server) deleteBlob(key string) {
	err := s.st.Apply(context.Background(), store.Actor{Kind: store.ActorSystem, ID: "blobs"}, func(tx *store.Tx) error {
		if err := tx.LockKey(blobLock(key)); err != nil {
			return err
		}
		if used, err := tx.BlobReferenced(key); err != nil || used {
			return err
		}
		return s.blobs.Delete(key)
	})
	if err != nil {
		s.log.Error("deleting blob", "error", err.Error())
	}
}

func (s *Server) deviceGrant(c echo.Context) error {
	var body api.GrantAnswer
	d, rc, err := s.loadAnswer(c, []string{store.KindAccess}, func() error { return decodeJSON(c, 64<<10, &body) })
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	kp, err := envelope.ParseKeyPacket(body.KeyPacket)
	if err != nil {
		return unprocessable(api.ProblemInvalidMessage, "Invalid key packet", err.Error())
	}
	want := 3
	if rc.rec.Profile == string(envelope.Modern) {
		want = 6
	}
	if kp.Version != want {
		return unprocessable(api.ProblemInvalidMessage, "Invalid key packet", fmt.Sprintf("a %s record needs a v%d key packet", rc.rec.Profile, want))
	}
	reqKey, err := storedKey(rc.requester.PublicKey)
	if err != nil {
		return err
	}
	if !kp.For(reqKey) {
		return unprocessable(api.ProblemWrongKeys, "Wrong recipient", "the key packet is not addressed to the requesting party's key")
	}
	stmt := []byte(body.Statement)
	g, err := statement.ParseGrant(stmt)
	if err != nil {
		return unprocessable(api.ProblemBadStatement, "Invalid statement", err.Error())
	}
	var bad []string
	if g.Record != rc.rec.ID {
		bad = append(bad, "record")
	}
	if g.Grantee != rc.requester.Fingerprint {
		bad = append(bad, "grantee")
	}
	if g.KeyPacketSHA256 != sha256.Sum256(body.KeyPacket) {
		bad = append(bad, "key-packet-sha256")
	}
	if g.PurposeSHA256 != statement.PurposeDigest(rc.req.Purpose) {
		bad = append(bad, "purpose-sha256")
	}
	if g.Request != rc.req.ID {
		bad = append(bad, "request")
	}
	if rc.req.GrantExpires != nil && g.Expires.After(*rc.req.GrantExpires) {
		bad = append(bad, "expires (later than requested)")
	}
	if len(bad) > 0 {
		return unprocessable(api.ProblemBadStatement, "Statement does not match the request", "fields that differ: "+strings.Join(bad, ", "))
	}
	if err := s.checkTime(g.Time); err != nil {
		return err
	}
	if !g.Expires.After(s.now()) {
		return unprocessable(api.ProblemBadStatement, "Grant already expired", "expires must be in the future")
	}
	if err := s.verifyDevice(d, stmt, []byte(body.Signature)); err != nil {
		return err
	}
	gr := store.Grant{ID: store.NewID(), RecordID: rc.rec.ID, PartyID: rc.requester.ID, UserID: rc.rec.UserID, RequestID: rc.req.ID,
		DeviceID: d.ID, KeyPacket: body.KeyPacket, Statement: stmt, Signature: []byte(body.Signature), Purpose: rc.req.Purpose,
		ExpiresAt: g.Expires}
	err = s.st.Change(ctx, deviceActor(d), func(tx *store.Tx) error {
		// The record is approved (loadAnswer checked; an approval is
		// final), so the request alone is checked again.
		if err := tx.AnswerOpenRequest(rc.req.ID, store.AnswerGranted, d.ID); err != nil {
			return err
		}
		if err := tx.InsertLater(&gr); err != nil {
			return err
		}
		tx.Audit("request.answer", "request", rc.req.ID)
		tx.Audit("grant.create", "grant", gr.ID)
		leaf, err := transparency.SignedLeaf(stmt, []byte(body.Signature))
		if err != nil {
			return err
		}
		tx.AppendLog(store.LogGrant, leaf)
		return answered(tx, rc, d.ID)
	})
	if err != nil {
		return err
	}
	s.wake(answeredKey(rc.req.ID), rc.req.ID)
	return c.JSON(http.StatusOK, api.AnswerResponse{RequestID: rc.req.ID, State: api.RequestAnswered, Answer: api.AnswerGranted, RecordID: rc.rec.ID, GrantID: gr.ID})
}

func (s *Server) deviceRefuse(c echo.Context) error {
	// The body is optional: empty, or the empty object {}.
	var body api.RefuseAnswer
	d, rc, err := s.loadAnswer(c, []string{store.KindAccess, store.KindDevice}, func() error { return decodeOptionalJSON(c, 1<<10, &body) })
	if err != nil {
		return err
	}
	if rc.req.Kind == store.KindDevice {
		return s.refuseLink(c, d, rc)
	}
	ctx := c.Request().Context()
	err = s.st.Change(ctx, deviceActor(d), func(tx *store.Tx) error {
		if err := tx.AnswerOpenRequest(rc.req.ID, store.AnswerRefused, d.ID); err != nil {
			return err
		}
		tx.Audit("request.refuse", "request", rc.req.ID)
		return answered(tx, rc, d.ID)
	})
	if err != nil {
		return err
	}
	s.wake(answeredKey(rc.req.ID), rc.req.ID)
	return c.JSON(http.StatusOK, api.AnswerResponse{RequestID: rc.req.ID, State: api.RequestAnswered, Answer: api.AnswerRefused, RecordID: rc.rec.ID})
}

func (s *Server) deviceListRecords(c echo.Context) error {
	p, err := pageOf(c)
	if err != nil {
		return err
	}
	user := deviceOf(c).UserID
	if v := c.QueryParam(api.QuerySessionKeyID); v != "" {
		if !isHex64(v) {
			return badRequest("session_key_id must be 64 lower-case hex digits")
		}
		ctx := c.Request().Context()
		rs, err := s.st.ApprovedWithSessionKey(ctx, user, v)
		if err != nil {
			return err
		}
		out, err := s.recordList(ctx, rs)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
	return s.listRecords(c, store.RecordFilter{UserID: user, Page: p})
}

// listRecords answers with the page of records f selects.
func (s *Server) listRecords(c echo.Context, f store.RecordFilter) error {
	ctx := c.Request().Context()
	rs, next, err := s.st.ListRecords(ctx, f)
	if err != nil {
		return err
	}
	out, err := s.recordList(ctx, rs)
	if err != nil {
		return err
	}
	out.NextCursor = nextCursor(next)
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deviceListGrants(c echo.Context) error {
	ctx := c.Request().Context()
	p, err := pageOf(c)
	if err != nil {
		return err
	}
	gs, next, err := s.st.ListGrants(ctx, store.GrantFilter{UserID: deviceOf(c).UserID, Page: p})
	if err != nil {
		return err
	}
	ids := make([]string, len(gs))
	for i := range gs {
		ids[i] = gs[i].PartyID
	}
	fprs, err := s.st.PartyFingerprints(ctx, ids...)
	if err != nil {
		return err
	}
	out := api.GrantList{Grants: make([]api.Grant, 0, len(gs)), NextCursor: nextCursor(next)}
	for i := range gs {
		out.Grants = append(out.Grants, grantJSON(&gs[i], fprs[gs[i].PartyID], "", false))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deviceRevokeGrant(c echo.Context) error {
	id, err := pathID(c, "grant")
	if err != nil {
		return err
	}
	d := deviceOf(c)
	var g *store.Grant
	var p *store.Party
	err = s.st.Apply(c.Request().Context(), deviceActor(d), func(tx *store.Tx) error {
		var revoked bool
		var err error
		g, p, revoked, err = tx.RevokeGrant(id, d.UserID)
		if err != nil {
			return notFoundAs("grant", err)
		}
		if !revoked {
			return conflict("the grant is already revoked")
		}
		tx.Audit("grant.revoke", "grant", id)
		leaf, err := (&statement.Revocation{Kind: statement.RevokedGrant, ID: id, Fingerprint: p.Fingerprint, Time: g.RevokedAt.Truncate(time.Second)}).Marshal()
		if err != nil {
			return err
		}
		tx.AppendLog(store.LogRevocation, leaf)
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, grantJSON(g, p.Fingerprint, s.deviceFingerprint(c.Request().Context(), g.DeviceID), false))
}

// deviceEvents is the local push channel: a server-sent events stream.
// On every connect it first replays all open requests of the device from
// the database (so nothing pushed while it was away is lost), then relays
// live events from the hub. The only payload is the request id.
//
// A push can be lost while the stream stays connected (a NOTIFY that
// failed on PostgreSQL, a full push queue): so every heartbeat also
// re-reads the device's open requests and sends those this stream has not
// sent yet. A lost push therefore delays a request by at most one
// heartbeat, and nothing is sent twice on one stream.
//
// The stream ends when the device is revoked: at once through the hub
// (Disconnect, on every replica), and in any case at the next heartbeat,
// which re-reads the device's status.
func (s *Server) deviceEvents(c echo.Context) error {
	d := deviceOf(c)
	ctx := c.Request().Context()
	var events <-chan push.Event
	cancel := func() {}
	if s.hub != nil {
		// Subscribe before the replay query so nothing falls in between.
		events, cancel = s.hub.Subscribe(d.ID)
	}
	defer cancel()
	// A revocation between the token check and the subscription would
	// have found no stream to end.
	if active, err := s.deviceActive(ctx, d.ID); err != nil {
		return err
	} else if !active {
		return unauthorized("the device is revoked")
	}
	// The replay (and each heartbeat's re-read) is the first page, as the
	// list route's default: the device fetches more as it answers these.
	replay := store.Page{Limit: api.DefaultPageSize}
	qs, _, err := s.openRequests(ctx, d, replay)
	if err != nil {
		return err
	}
	w := c.Response()
	push.SetSSEHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	if err := push.WriteSSEHeartbeat(w); err != nil {
		return nil
	}
	sent := map[string]bool{} // the open requests this stream has sent
	if err := sendUnsent(w, qs, sent); err != nil {
		return nil
	}
	tick := time.NewTicker(s.cfg.SSEHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if active, err := s.deviceActive(ctx, d.ID); err == nil && !active {
				return nil // revoked (the Disconnect may have been missed)
			}
			if err := push.WriteSSEHeartbeat(w); err != nil {
				return nil
			}
			// A database error here only skips this re-check.
			if qs, _, err := s.openRequests(ctx, d, replay); err == nil {
				if err := sendUnsent(w, qs, sent); err != nil {
					return nil
				}
			}
		case ev, ok := <-events:
			if !ok {
				return nil // overflow, resync or shutdown: the device reconnects
			}
			if sent[ev.RequestID] {
				continue
			}
			if err := push.WriteSSE(w, ev); err != nil {
				return nil
			}
			sent[ev.RequestID] = true
		}
	}
}

// sendUnsent writes the open requests qs that sent does not hold, and
// then keeps in sent only the requests still open (so it stays as small
// as the device's list of open requests).
func sendUnsent(w io.Writer, qs []store.Request, sent map[string]bool) error {
	open := make(map[string]bool, len(qs))
	for _, q := range qs {
		open[q.ID] = true
		if sent[q.ID] {
			continue
		}
		if err := push.WriteSSE(w, push.Event{RequestID: q.ID}); err != nil {
			return err
		}
		sent[q.ID] = true
	}
	for id := range sent {
		if !open[id] {
			delete(sent, id)
		}
	}
	return nil
}

// deviceActive re-reads whether the device is still active.
func (s *Server) deviceActive(ctx context.Context, id string) (bool, error) {
	return s.st.DeviceActive(ctx, id)
}

// endStreams ends the device's event streams: on this replica's hub at
// once, and on every replica through the notifier when it can (a
// PGBroadcaster behind push.Multi).
func (s *Server) endStreams(deviceID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.hub != nil {
		s.hub.Disconnect(ctx, deviceID)
	}
	if d, ok := s.notifier.(push.Disconnecter); ok {
		if err := d.Disconnect(ctx, deviceID); err != nil {
			s.log.Warn("ending the streams of a revoked device on other replicas", "device", deviceID, "error", err.Error())
		}
	}
}

// isHex64 reports whether v is 32 bytes in lower-case hex.
func isHex64(v string) bool {
	b, err := hex.DecodeString(v)
	return err == nil && len(b) == 32 && v == strings.ToLower(v)
}
