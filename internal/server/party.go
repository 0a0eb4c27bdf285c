package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// partyView is what a party may see of a record.
type partyView struct {
	rec     store.Record
	decider string       // the fingerprint of the device that decided rec, if any
	grant   *store.Grant // the caller's newest valid grant; nil if it has none
}

// viewRecord is the one visibility rule for parties, used by
// GET /v1/records/{id}, its /content and its /grant: a party sees a record
// if it submitted it or holds a valid grant on it: neither revoked nor
// expired. Anyone else gets the same 404 as for a record that does not
// exist. Routes that serve the grant or the content also need the grant
// itself (needGrant): the submitter without one gets 404 there.
func (s *Server) viewRecord(ctx context.Context, recordID string, p *store.Party, needGrant bool) (*partyView, error) {
	rec, decider, err := s.st.FindRecordWithDecider(ctx, recordID)
	if err != nil {
		return nil, notFoundAs("record", err)
	}
	v := partyView{rec: *rec, decider: decider}
	if !needGrant && v.rec.PartyID == p.ID {
		return &v, nil // its submitter sees a record without a grant
	}
	g, err := s.st.ValidGrant(ctx, recordID, p.ID, s.now())
	switch {
	case err == nil:
		v.grant = g
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	case needGrant:
		return nil, notFound("grant")
	default:
		return nil, notFound("record")
	}
	return &v, nil
}

func (s *Server) getRecord(c echo.Context) error {
	id, err := pathID(c, "record")
	if err != nil {
		return err
	}
	wait, err := waitOf(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	party := partyOf(c)
	woken, stop := s.subscribe(party.ID, decidedKey(id), wait)
	defer stop()
	v, err := readAwaiting(s, ctx, woken, wait,
		func() (*partyView, error) { return s.viewRecord(ctx, id, party, false) },
		func(v *partyView) (bool, time.Time) {
			// Only the submitter waits: nobody else sees a pending record.
			return v.rec.State == store.StatePending && v.rec.PartyID == party.ID, v.rec.ExpiresAt
		})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, recordJSON(&v.rec, v.decider, true))
}

func (s *Server) requestAccess(c echo.Context) error {
	id, err := pathID(c, "record")
	if err != nil {
		return err
	}
	party := partyOf(c)
	var req api.AccessRequest
	if err := decodeJSON(c, 8<<10, &req); err != nil {
		return err
	}
	if req.Purpose == "" || len(req.Purpose) > 1024 || strings.ContainsAny(req.Purpose, "\x00") {
		return badRequest("purpose is required (at most 1024 bytes)")
	}
	if req.ExpiresIn < 0 {
		return badRequest("expires_in must not be negative")
	}
	idem, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// A retry (same key) gets the request made first, and the phone is
	// asked once; it costs no rate.
	if idem != "" {
		if found, err := s.accessReplay(c, party.ID, idem, id, req.Purpose); found || err != nil {
			return err
		}
	}
	if !s.accessLimiters.allow(party.ID) {
		return rateLimited("access request rate limit exceeded")
	}
	now := s.now()
	ttl := s.cfg.MaxGrantTTL
	if req.ExpiresIn > 0 && time.Duration(req.ExpiresIn)*time.Second < ttl {
		ttl = time.Duration(req.ExpiresIn) * time.Second
	}
	grantExp := now.Add(ttl).Truncate(time.Second)
	q := store.Request{ID: store.NewID(), Kind: store.KindAccess, RecordID: id, PartyID: party.ID, Purpose: req.Purpose,
		GrantExpires: &grantExp, State: store.RequestOpen, ExpiresAt: now.Add(s.cfg.RequestTTL)}
	if idem != "" {
		q.IdempotencyKey = &idem
	}
	// Read before the insert, outside a transaction: an approval is
	// final, so a record approved now is approved when the request commits.
	// The devices the request will be pushed to come with it.
	r, devices, err := s.st.RecordWithDevices(ctx, id)
	if err != nil {
		return notFoundAs("record", err)
	}
	if r.State != store.StateApproved {
		return conflict("only approved records can be opened")
	}
	if err := canReceive(party, r.ID, r.Profile); err != nil {
		return err
	}
	q.UserID = r.UserID
	err = s.st.Insert(ctx, partyActor(party), func(b *store.Batch) error {
		b.Audit("request.create", "request", q.ID)
		return b.InsertLater(&q)
	})
	if err != nil {
		if idem != "" && store.IsUniqueViolation(err) {
			// A concurrent request with the same key committed first.
			if found, rerr := s.accessReplay(c, party.ID, idem, id, req.Purpose); found || rerr != nil {
				return rerr
			}
		}
		return err
	}
	s.notifyRecord(q.ID, devices)
	return c.JSON(http.StatusAccepted, accessResponse(&q))
}

func accessResponse(q *store.Request) api.AccessResponse {
	out := api.AccessResponse{RequestID: q.ID, RecordID: q.RecordID, Expires: q.ExpiresAt.UTC()}
	if q.GrantExpires != nil {
		out.GrantExpires = q.GrantExpires.UTC()
	}
	return out
}

// accessReplay answers an access request whose Idempotency-Key the party
// used before: 200 with the request made then, if it was for the same
// record and purpose; else a 409 that names it. found is false when the
// key is new.
func (s *Server) accessReplay(c echo.Context, partyID, idem, recordID, purpose string) (found bool, err error) {
	prev, err := s.st.RequestByIdempotencyKey(c.Request().Context(), partyID, idem)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if prev.Kind != store.KindAccess || prev.RecordID != recordID || prev.Purpose != purpose {
		return true, idempotencyKeyReused(fmt.Sprintf("the Idempotency-Key was used for another access request: %s, for record %s", prev.ID, prev.RecordID),
			prev.RecordID, prev.ID)
	}
	return true, c.JSON(http.StatusOK, accessResponse(prev))
}

// canReceive refuses an access request the device could only answer with
// a grant its requester cannot use: the party's key cannot receive a
// record of this profile (envelope.Key.CanReceive). Asking the device
// would put a request on the phone that no answer can satisfy.
func canReceive(p *store.Party, recordID, profile string) error {
	key, err := storedKey(p.PublicKey)
	if err != nil {
		return err
	}
	if err := key.CanReceive(envelope.Profile(profile)); err != nil {
		why := strings.TrimPrefix(err.Error(), envelope.ErrProfileMismatch.Error()+": ")
		return unprocessable(api.ProblemIncompatibleKey, "Key cannot receive this record",
			fmt.Sprintf("record %s is sealed with the %s profile, which the caller's key %s cannot receive: %s", recordID, profile, p.Fingerprint, why))
	}
	return nil
}

// contentReader is PKESK || blob as one ReadSeeker, for http.ServeContent.
type contentReader struct {
	head []byte
	f    blob.File
	off  int64
	fpos int64 // the file's own offset
	size int64
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.off < int64(len(r.head)) {
		n := copy(p, r.head[r.off:])
		r.off += int64(n)
		return n, nil
	}
	if want := r.off - int64(len(r.head)); want != r.fpos {
		if _, err := r.f.Seek(want, io.SeekStart); err != nil {
			return 0, err
		}
		r.fpos = want
	}
	if rem := r.size - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := r.f.Read(p)
	r.off += int64(n)
	r.fpos += int64(n)
	return n, err
}

func (r *contentReader) Seek(off int64, whence int) (int64, error) {
	off, err := blob.SeekOffset(off, whence, r.off, r.size)
	if err != nil {
		return 0, err
	}
	r.off = off
	return off, nil
}

func (s *Server) downloadContent(c echo.Context) error {
	id, err := pathID(c, "record")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	v, err := s.viewRecord(ctx, id, partyOf(c), true)
	if err != nil {
		return err
	}
	g, r := v.grant, &v.rec
	if r.State != store.StateApproved || r.BlobKey == nil {
		return notFound("record content")
	}
	f, err := s.openCiphertext(ctx, r)
	if err != nil {
		return err
	}
	defer f.Close()
	cr := &contentReader{head: g.KeyPacket, f: f, size: int64(len(g.KeyPacket)) + f.Size()}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "application/pgp-encrypted")
	h.Set("Cache-Control", "no-store")
	// The ETag names the exact bytes (grant key packet + ciphertext).
	h.Set("ETag", `"`+g.ID+"-"+r.CiphertextSHA256[:16]+`"`)
	// ServeContent writes its own error responses (412, 416) as text/plain;
	// problemWriter turns them into problem documents like every other error.
	pw := &problemWriter{ResponseWriter: c.Response(), head: c.Request().Method == http.MethodHead}
	http.ServeContent(pw, c.Request(), "", time.Time{}, cr)
	return nil
}

// openCiphertext opens the data packet of record r: from the database for
// a small record, else from the blob store.
func (s *Server) openCiphertext(ctx context.Context, r *store.Record) (blob.File, error) {
	data, err := s.st.InlineData(ctx, r.ID)
	if errors.Is(err, store.ErrNotFound) {
		return s.blobs.Open(*r.BlobKey)
	}
	if err != nil {
		return nil, err
	}
	return inlineFile{bytes.NewReader(data)}, nil
}

// inlineFile is a data packet the database kept, read as a blob.
type inlineFile struct{ *bytes.Reader }

func (inlineFile) Close() error { return nil }

// problemWriter passes a handler's successful responses through unchanged
// and replaces any error status it writes (≥ 400, with whatever body) by an
// application/problem+json document for that status. It wraps
// http.ServeContent, which answers 412 and 416 itself in text/plain.
type problemWriter struct {
	http.ResponseWriter
	head    bool // HEAD: headers only
	replace bool // an error status was written: drop the handler's body
}

func (w *problemWriter) WriteHeader(code int) {
	if code < 400 || w.replace {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replace = true
	p := api.Problem{Type: typeForStatus(code), Title: http.StatusText(code), Status: code}
	switch code {
	case http.StatusRequestedRangeNotSatisfiable:
		p.Detail = "the range does not overlap the content; Content-Range gives its size"
	case http.StatusPreconditionFailed:
		p.Detail = "If-Match or If-Unmodified-Since does not match the content"
	}
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Del("Content-Encoding")
	h.Del("X-Content-Type-Options")
	h.Set(echo.HeaderContentType, api.ContentTypeProblemJSON)
	h.Set("Cache-Control", "no-store")
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(code)
	if !w.head {
		w.ResponseWriter.Write(body)
	}
}

func (w *problemWriter) Write(b []byte) (int, error) {
	if w.replace {
		return len(b), nil // the handler's own error text
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *problemWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) getGrant(c echo.Context) error {
	id, err := pathID(c, "record")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	party := partyOf(c)
	v, err := s.viewRecord(ctx, id, party, true)
	if err != nil {
		if refused, rerr := s.accessRefused(ctx, id, party.ID); rerr != nil {
			return rerr
		} else if refused != "" {
			return problem(http.StatusForbidden, api.ProblemAccessRefused, "Access refused",
				"the user refused access request "+refused)
		}
		return err
	}
	g := v.grant
	return c.JSON(http.StatusOK, grantJSON(g, party.Fingerprint, s.deviceFingerprint(ctx, g.DeviceID), true))
}

// accessRefused returns the id of the party's newest access request for the
// record if the user refused it, so that a party waiting for a grant learns
// the answer instead of waiting for ever. It reveals nothing to anyone else:
// only the party's own requests are looked at.
func (s *Server) accessRefused(ctx context.Context, recordID, partyID string) (string, error) {
	q, err := s.st.NewestAccessRequest(ctx, recordID, partyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	if q.State == store.RequestAnswered && q.Answer == store.AnswerRefused {
		return q.ID, nil
	}
	return "", nil
}

func (s *Server) partyListRecords(c echo.Context) error {
	p, err := pageOf(c)
	if err != nil {
		return err
	}
	f := store.RecordFilter{PartyID: partyOf(c).ID, Page: p}
	if c.QueryParams().Has(api.QueryIdempotencyKey) {
		// The record the caller uploaded with this key, if any: a client
		// whose upload's answer was lost asks before it uploads again.
		idem := c.QueryParam(api.QueryIdempotencyKey)
		if !idemRE.MatchString(idem) {
			return badRequest("idempotency_key must be 1-255 characters of A-Z a-z 0-9 _ . : -")
		}
		f.IdempotencyKey = &idem
	}
	return s.listRecords(c, f)
}

// partyGetRequest tells a party where one of its own access requests
// stands, so it can wait for that request's answer (not just for any
// grant on the record: an older grant says nothing about a new request).
// Anyone else's request, and any approval request, is a 404.
func (s *Server) partyGetRequest(c echo.Context) error {
	id, err := pathID(c, "request")
	if err != nil {
		return err
	}
	wait, err := waitOf(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	woken, stop := s.subscribe(partyOf(c).ID, answeredKey(id), wait)
	defer stop()
	q, err := readAwaiting(s, ctx, woken, wait,
		func() (*store.Request, error) {
			q, err := s.st.FindRequest(ctx, id)
			if err == nil && (q.PartyID != partyOf(c).ID || q.Kind != store.KindAccess) {
				err = store.ErrNotFound
			}
			if err != nil {
				return nil, notFoundAs("request", err)
			}
			return q, nil
		},
		func(q *store.Request) (bool, time.Time) {
			return q.State == store.RequestOpen && s.now().Before(q.ExpiresAt), q.ExpiresAt
		})
	if err != nil {
		return err
	}
	out := api.AccessStatus{RequestID: q.ID, RecordID: q.RecordID, State: api.RequestState(q.State), Answer: api.Answer(q.Answer),
		Created: q.CreatedAt.UTC(), Expires: q.ExpiresAt.UTC()}
	if q.State == store.RequestOpen && !s.now().Before(q.ExpiresAt) {
		out.State = api.RequestExpired
	}
	if q.GrantExpires != nil {
		t := q.GrantExpires.UTC()
		out.GrantExpires = &t
	}
	if q.AnsweredAt != nil {
		t := q.AnsweredAt.UTC()
		out.Answered = &t
	}
	if q.Answer == store.AnswerGranted {
		if g, err := s.st.GrantOfRequest(ctx, q.ID); err == nil {
			t := g.ExpiresAt.UTC()
			out.GrantID, out.GrantExpires = g.ID, &t
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

func (s *Server) partyListGrants(c echo.Context) error {
	ctx := c.Request().Context()
	party := partyOf(c)
	p, err := pageOf(c)
	if err != nil {
		return err
	}
	gs, next, err := s.st.ListGrants(ctx, store.GrantFilter{PartyID: party.ID, Page: p})
	if err != nil {
		return err
	}
	out := api.GrantList{Grants: make([]api.Grant, 0, len(gs)), NextCursor: nextCursor(next)}
	for i := range gs {
		out.Grants = append(out.Grants, grantJSON(&gs[i], party.Fingerprint, "", false))
	}
	return c.JSON(http.StatusOK, out)
}
