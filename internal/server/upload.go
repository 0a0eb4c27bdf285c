package server

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// uploadOverhead is what an upload may carry beyond the data packet:
// multipart framing, metadata, private metadata, key packets, statement
// and signature.
const uploadOverhead = 1 << 20

// copyBufferSize and copyBuffers size the body copy pipeline: large
// writes, few syscalls, bounded memory per upload.
const (
	copyBufferSize = 1 << 20
	copyBuffers    = 4
)

var copyBufs = sync.Pool{New: func() any { b := blob.AlignedBuffer(copyBufferSize); return &b }}

var idemRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,255}$`)

var errBodyTooLarge = errors.New("body too large")

// capReader fails with errBodyTooLarge once more than max bytes are read.
type capReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errBodyTooLarge
	}
	return n, err
}

// recipient is a key every record of a user must be sealed to.
type recipient struct {
	deviceID string // empty: the recovery key
	fpr      string
	key      *envelope.Key
}

// recipients returns the keys a record of u, whose active devices are ds,
// must be sealed to.
func recipients(u *store.User, ds []store.Device) ([]recipient, error) {
	out := make([]recipient, 0, len(ds)+1)
	for _, d := range ds {
		k, err := storedKey(d.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("stored device key %s: %w", d.ID, err)
		}
		out = append(out, recipient{deviceID: d.ID, fpr: d.Fingerprint, key: k})
	}
	if len(u.RecoveryKey) > 0 {
		k, err := storedKey(u.RecoveryKey)
		if err != nil {
			return nil, fmt.Errorf("stored recovery key of %s: %w", u.ID, err)
		}
		out = append(out, recipient{fpr: u.RecoveryFingerprint, key: k})
	}
	return out, nil
}

// matchRecipients checks that the key packets are exactly one per
// recipient, and returns them paired with their recipient.
func matchRecipients(kps []*envelope.KeyPacket, recips []recipient) ([]store.RecordKeyPacket, error) {
	used := make([]bool, len(recips))
	out := make([]store.RecordKeyPacket, 0, len(kps))
	for i, kp := range kps {
		match := -1
		for j, r := range recips {
			if kp.For(r.key) {
				if match >= 0 {
					return nil, fmt.Errorf("key packet %d matches more than one of the user's keys", i+1)
				}
				match = j
			}
		}
		if match < 0 {
			return nil, fmt.Errorf("key packet %d is not addressed to any of the user's current keys", i+1)
		}
		if used[match] {
			return nil, fmt.Errorf("two key packets are addressed to key %s", recips[match].fpr)
		}
		used[match] = true
		r := recips[match]
		out = append(out, store.RecordKeyPacket{DeviceID: r.deviceID, Recovery: r.deviceID == "", Fingerprint: r.fpr, Packet: kp.Raw})
	}
	for j, u := range used {
		if !u {
			return nil, fmt.Errorf("no key packet is addressed to key %s", recips[j].fpr)
		}
	}
	return out, nil
}

// maxPartHeader bounds the header block of each part of an upload
// (mime/multipart alone reads up to 10 MiB of it).
const maxPartHeader = 8 << 10

var errPartHeaderTooLarge = fmt.Errorf("the headers of a part exceed %d bytes", maxPartHeader)

// partReader reads the parts of an upload, with a bound on each part's
// header block.
type partReader struct {
	mr   *multipart.Reader
	gate *headerGate
	buf  *bufio.Reader
}

// partBufs are the buffers under the multipart readers: allocating (and
// zeroing) 1 MiB per upload was a fifth of a small upload's CPU.
var partBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, copyBufferSize) }}

func newPartReader(r io.Reader, boundary string) *partReader {
	// A large buffer under the multipart reader (whose own is 4 KiB) turns
	// small socket reads into 1 MiB ones.
	br := partBufs.Get().(*bufio.Reader)
	br.Reset(r)
	g := &headerGate{r: br, budget: maxPartHeader + len(boundary) + 64}
	return &partReader{mr: multipart.NewReader(g, boundary), gate: g, buf: br}
}

// close gives the buffer back; the reader is not used after it.
func (pr *partReader) close() {
	pr.buf.Reset(nil)
	partBufs.Put(pr.buf)
	pr.buf = nil
}

// headerGate is what the multipart reader reads from. While it reads a
// part's delimiter line and headers (reading is set), it gets at most
// budget more bytes: with what its own 4 KiB buffer holds, a header block
// of maxPartHeader bytes always fits, and a block of a few KiB more is
// refused before it is read.
type headerGate struct {
	r       io.Reader
	budget  int
	reading bool
	left    int
}

func (g *headerGate) Read(p []byte) (int, error) {
	if !g.reading {
		return g.r.Read(p)
	}
	if g.left == 0 {
		return 0, errPartHeaderTooLarge
	}
	if len(p) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= n
	return n, err
}

// nextPart is mr.NextPart with the header bound: io.EOF after the last
// part, errPartHeaderTooLarge, or another error.
func (pr *partReader) nextPart() (*multipart.Part, error) {
	pr.gate.reading, pr.gate.left = true, pr.gate.budget
	p, err := pr.mr.NextPart()
	pr.gate.reading = false
	if err != nil {
		return nil, err
	}
	// The header block as parsed, without the white space it may have
	// had around values: the bound is exact for headers as clients write
	// them, and the gate bounds what is read whatever their form.
	n := 0
	for k, vs := range p.Header {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	if n > maxPartHeader {
		return nil, errPartHeaderTooLarge
	}
	return p, nil
}

// next returns the next part, which must be called names[0] (or one of
// the other names).
func (pr *partReader) next(names ...string) (*multipart.Part, error) {
	p, err := pr.nextPart()
	if err != nil {
		switch {
		case errors.Is(err, errBodyTooLarge):
			return nil, err
		case errors.Is(err, errPartHeaderTooLarge):
			return nil, badRequest(errPartHeaderTooLarge.Error())
		case err == io.EOF:
			return nil, badRequest(fmt.Sprintf("the upload ends before the %q part", names[0]))
		}
		return nil, badRequest("malformed multipart body")
	}
	for _, n := range names {
		if p.FormName() == n {
			return p, nil
		}
	}
	return nil, badRequest(fmt.Sprintf("expected part %q, got another (parts: metadata, [private], body, statement, signature)", names[0]))
}

// end checks that no part follows the last one.
func (pr *partReader) end() error {
	if _, err := pr.nextPart(); err != io.EOF {
		if err != nil && errors.Is(err, errBodyTooLarge) {
			return err
		}
		return badRequest("unexpected data after the signature part")
	}
	return nil
}

// readPart reads a small part of at most max bytes.
func readPart(p *multipart.Part, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(p, max+1))
	if err != nil {
		return nil, streamError(err)
	}
	if int64(len(b)) > max {
		return nil, tooLarge(fmt.Sprintf("the %q part exceeds %d bytes", name, max))
	}
	return b, nil
}

// streamError maps an error reading the request body.
func streamError(err error) error {
	var pe *problemError
	switch {
	case errors.As(err, &pe):
		return err
	case errors.Is(err, errBodyTooLarge):
		return tooLarge("the upload exceeds the maximum record size")
	case errors.Is(err, envelope.ErrMalformed), errors.Is(err, envelope.ErrUnsupported), errors.Is(err, envelope.ErrProfileMismatch):
		return unprocessable(api.ProblemInvalidMessage, "Invalid OpenPGP message", err.Error())
	}
	return badRequest("the upload was interrupted or is malformed")
}

func validMetadata(m *api.Metadata) error {
	if m.ContentType == "" || len(m.ContentType) > 255 {
		return badRequest("metadata content_type is required (at most 255 bytes)")
	}
	if _, _, err := mime.ParseMediaType(m.ContentType); err != nil {
		return badRequest("metadata content_type is not a media type")
	}
	if m.Size < 0 {
		return badRequest("metadata size must not be negative")
	}
	if len(m.Purpose) > 1024 {
		return badRequest("metadata purpose exceeds 1024 bytes")
	}
	return nil
}

func (s *Server) upload(c echo.Context) error {
	party := partyOf(c)
	userID, err := pathID(c, "user")
	if err != nil {
		return err
	}
	idem, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	// Admitted before a byte of the body is read; the slot is held until
	// the handler returns, however the upload ends.
	if !s.uploadSlots.acquire(party.ID) {
		return rateLimited(fmt.Sprintf("this party has %d uploads in progress already, the most allowed at once", s.uploadSlots.max))
	}
	defer s.uploadSlots.release(party.ID)
	if !s.uploadLimiters.allow(party.ID) {
		return rateLimited("upload rate limit exceeded")
	}
	ctx := c.Request().Context()
	user, devices, err := s.st.UserWithActiveDevices(ctx, userID)
	if err != nil {
		return notFoundAs("user", err)
	}
	recips, err := recipients(user, devices)
	if err != nil {
		return err
	}
	if len(recips) == 0 || recips[0].deviceID == "" {
		return conflict("the user has no enrolled device")
	}
	partyKey, err := storedKey(party.PublicKey)
	if err != nil {
		return err
	}
	mt, params, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return problem(http.StatusUnsupportedMediaType, api.ProblemUnsupportedMT, "Unsupported media type", "send multipart/form-data")
	}
	if c.Request().ContentLength > s.cfg.MaxRecordSize+uploadOverhead {
		return tooLarge(fmt.Sprintf("the upload exceeds the maximum record size of %d bytes", s.cfg.MaxRecordSize))
	}
	body := &capReader{r: c.Request().Body, max: s.cfg.MaxRecordSize + uploadOverhead}
	parts := newPartReader(body, params["boundary"])
	defer parts.close()

	// metadata
	p, err := parts.next(api.PartMetadata)
	if err != nil {
		return streamError(err)
	}
	metaBytes, err := readPart(p, api.PartMetadata, api.MaxMetadataSize)
	if err != nil {
		return err
	}
	var meta api.Metadata
	if err := decodeJSONBytes(metaBytes, &meta); err != nil {
		return err
	}
	if err := validMetadata(&meta); err != nil {
		return err
	}

	// optional private metadata, then body
	p, err = parts.next(api.PartBody, api.PartPrivate)
	if err != nil {
		return streamError(err)
	}
	var private []byte
	if p.FormName() == api.PartPrivate {
		if private, err = readPart(p, api.PartPrivate, api.MaxPrivateSize); err != nil {
			return err
		}
		pm, err := envelope.Split(bytes.NewReader(private))
		if err == nil {
			_, err = io.Copy(io.Discard, pm.Data)
		}
		if err != nil {
			return unprocessable(api.ProblemInvalidMessage, "Invalid private metadata", "the private part is not an OpenPGP message: "+err.Error())
		}
		if err := s.profileAccepted("private metadata", pm.Profile()); err != nil {
			return err
		}
		if _, err := matchRecipients(pm.KeyPackets, recips); err != nil {
			return unprocessable(api.ProblemWrongKeys, "Wrong recipients", "private metadata: "+err.Error())
		}
		if p, err = parts.next(api.PartBody); err != nil {
			return streamError(err)
		}
	}

	// body: key packets first, checked before a byte of data is stored.
	// The part reads from a pooled 1 MiB buffer already; Split needs one of
	// its own only for peeks and key packets, and the data's large reads
	// pass it by, so a small one spares each upload a 64 KiB allocation.
	msg, err := envelope.Split(bufio.NewReaderSize(p, 4<<10))
	if err != nil {
		return streamError(err)
	}
	if err := s.profileAccepted("message", msg.Profile()); err != nil {
		return err
	}
	kps, err := matchRecipients(msg.KeyPackets, recips)
	if err != nil {
		return unprocessable(api.ProblemWrongKeys, "Wrong recipients", err.Error())
	}
	data, err := newSpool(s.cfg.InlineMax, s.blobs.Create)
	if err != nil {
		return err
	}
	defer data.abort() // a no-op once committed
	dig := envelope.NewDigester()
	if err := copyData(data, dig, msg.Data, s.cfg.MaxRecordSize); err != nil {
		var we *blobWriteError
		if errors.As(err, &we) {
			return we.err // the server's own failure (a full disk: 507), not the client's
		}
		return streamError(err)
	}
	digest := dig.Digest()

	// statement and signature
	if p, err = parts.next(api.PartStatement); err != nil {
		return streamError(err)
	}
	stmt, err := readPart(p, api.PartStatement, api.MaxStatementSize)
	if err != nil {
		return err
	}
	if p, err = parts.next(api.PartSignature); err != nil {
		return streamError(err)
	}
	sig, err := readPart(p, api.PartSignature, api.MaxSignatureSize)
	if err != nil {
		return err
	}
	if err := parts.end(); err != nil {
		return streamError(err)
	}

	sub, err := statement.ParseSubmission(stmt)
	if err != nil {
		return unprocessable(api.ProblemBadStatement, "Invalid submission statement", err.Error())
	}
	want := statement.Submission{User: user.ID, Submitter: party.Fingerprint, KeyPackets: envelope.KeyPacketsDigest(msg.KeyPackets),
		Ciphertext: digest, MetadataSHA256: statement.MetadataDigest(metaBytes, private)}
	if diff := diffSubmission(sub, &want); diff != "" {
		return unprocessable(api.ProblemBadStatement, "Submission statement does not match the upload", diff)
	}
	if err := statement.Verify(stmt, sig, partyKey); err != nil {
		return unprocessable(api.ProblemBadSignature, "Invalid signature", "the submission signature does not verify with the caller's key: "+err.Error())
	}
	shaHex := digest.Hex()
	metaHex := fmt.Sprintf("%x", want.MetadataSHA256)

	// Idempotent retry?
	if idem != "" {
		prev, err := s.st.RecordByIdempotencyKey(ctx, party.ID, idem)
		if err == nil {
			return s.idempotentReply(c, prev, shaHex, metaHex, user.ID)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if data.tmp != nil {
		// A large duplicate is refused before the fsync and the rename over
		// the existing blob (the unique index still decides a race).
		if dup, err := s.st.BlobReferenced(ctx, shaHex); err != nil {
			return err
		} else if dup {
			return conflict("a record with this ciphertext exists already")
		}
		// The slow part of making a blob durable (fsync of the whole
		// file) happens here, outside the transaction.
		if err := data.tmp.Sync(); err != nil {
			return err
		}
	}

	now := s.now()
	rec := store.Record{ID: store.NewID(), UserID: user.ID, PartyID: party.ID, State: store.StatePending,
		Profile: string(msg.Profile()), CiphertextSHA256: shaHex, Size: digest.Size, BlobKey: &shaHex,
		Metadata: metaBytes, Private: private, MetadataSHA256: metaHex, KeyPacketsSHA256: hex.EncodeToString(want.KeyPackets[:]),
		ContentType:  meta.ContentType,
		DeclaredSize: meta.Size, Purpose: meta.Purpose, SubmissionStatement: stmt, SubmissionSignature: sig,
		ExpiresAt: now.Add(s.cfg.PendingTTL)}
	if idem != "" {
		rec.IdempotencyKey = &idem
	}
	req := store.Request{ID: store.NewID(), Kind: store.KindApproval, RecordID: rec.ID, UserID: user.ID,
		PartyID: party.ID, State: store.RequestOpen, ExpiresAt: rec.ExpiresAt}
	// The rows, inserted with the commit. A record of the same ciphertext
	// is refused then by the unique index on its blob key.
	rows := func(b *store.Batch) error {
		for i := range kps {
			kps[i].RecordID = rec.ID
		}
		// The key packets in one insert, in message order: the rows' ids
		// keep that order, which is the order devices are served them in.
		for _, v := range []any{&rec, &kps, &req} {
			if err := b.InsertLater(v); err != nil {
				return err
			}
		}
		b.Audit("record.submit", "record", rec.ID)
		b.Audit("request.create", "request", req.ID)
		return nil
	}
	renamed := false
	if data.tmp == nil {
		// A small record: its data packet goes in with its rows.
		err = s.st.Insert(ctx, partyActor(party), func(b *store.Batch) error {
			if err := rows(b); err != nil {
				return err
			}
			return b.InsertLater(&store.InlineCiphertext{RecordID: rec.ID, Data: append([]byte{}, data.buf...)})
		})
	} else {
		err = s.st.Apply(ctx, partyActor(party), func(tx *store.Tx) error {
			if err := rows(tx.Batch); err != nil {
				return err
			}
			// Under the blob's lock, so that no deletion of an older blob
			// with the same bytes (a rejected or expired record's) runs in
			// between.
			if err := tx.LockKey(blobLock(shaHex)); err != nil {
				return err
			}
			// The blob takes its name durably before the rows are written
			// and committed: a crash leaves at worst a blob without a row
			// (harmless), never a row without its blob, and never a
			// partial blob under its key.
			if err := data.tmp.Commit(shaHex); err != nil {
				return err
			}
			renamed = true
			return nil
		})
	}
	if err != nil {
		if renamed {
			// The commit failed after the rename: remove the blob unless a
			// committed record refers to it (checked under the lock).
			s.deleteBlob(shaHex)
		}
		if store.IsUniqueViolation(err) {
			// A concurrent upload of the same bytes (or the same
			// Idempotency-Key) committed first.
			if idem != "" {
				if prev, e := s.st.RecordByIdempotencyKey(ctx, party.ID, idem); e == nil {
					return s.idempotentReply(c, prev, shaHex, metaHex, user.ID)
				}
			}
			return conflict("a record with this ciphertext exists already")
		}
		return err
	}
	// The devices read at the start of the upload: one revoked since is
	// pushed the request id (all a push carries) and can fetch nothing.
	s.notifyRecord(req.ID, devices)
	c.Response().Header().Set(echo.HeaderLocation, api.Path(api.PathRecord, rec.ID))
	return c.JSON(http.StatusCreated, s.recordView(ctx, &rec))
}

func (s *Server) idempotentReply(c echo.Context, prev *store.Record, shaHex, metaHex, userID string) error {
	if prev.CiphertextSHA256 != shaHex || prev.MetadataSHA256 != metaHex || prev.UserID != userID {
		return idempotencyKeyReused(fmt.Sprintf("the Idempotency-Key was used for another upload: record %s", prev.ID), prev.ID, "")
	}
	c.Response().Header().Set(echo.HeaderLocation, api.Path(api.PathRecord, prev.ID))
	return c.JSON(http.StatusOK, s.recordView(c.Request().Context(), prev))
}

// idempotencyKeyReused is the 409 for an Idempotency-Key the caller used
// for something else before; it names that record (and access request).
// A client whose earlier attempt's answer was lost, and which sealed the
// record again (a new ciphertext), learns here which record it made.
func idempotencyKeyReused(detail, recordID, requestID string) error {
	return &problemError{p: api.Problem{Type: api.ProblemIdempotencyKeyReused, Title: "Idempotency-Key already used",
		Status: http.StatusConflict, Detail: detail, RecordID: recordID, RequestID: requestID}}
}

// idempotencyKey returns the request's Idempotency-Key header ("" if
// none), checked.
func idempotencyKey(c echo.Context) (string, error) {
	idem := c.Request().Header.Get(api.HeaderIdempotencyKey)
	if idem != "" && !idemRE.MatchString(idem) {
		return "", badRequest("Idempotency-Key must be 1-255 characters of A-Z a-z 0-9 _ . : -")
	}
	return idem, nil
}

// diffSubmission names the fields in which got differs from want.
func diffSubmission(got, want *statement.Submission) string {
	var bad []string
	if got.User != want.User {
		bad = append(bad, "user")
	}
	if got.Submitter != want.Submitter {
		bad = append(bad, "submitter (must be the caller's key fingerprint)")
	}
	if got.KeyPackets != want.KeyPackets {
		bad = append(bad, "key-packets-sha256")
	}
	if got.Ciphertext.SHA256 != want.Ciphertext.SHA256 {
		bad = append(bad, "ciphertext-sha256")
	}
	if got.Ciphertext.Size != want.Ciphertext.Size {
		bad = append(bad, "ciphertext-size")
	}
	if got.MetadataSHA256 != want.MetadataSHA256 {
		bad = append(bad, "metadata-sha256")
	}
	if len(bad) == 0 {
		return ""
	}
	return "fields that differ from what the server received: " + strings.Join(bad, ", ")
}

// spool receives a record's data packet: in memory while it is at most
// max bytes, to be kept in the database with the record's rows, and in a
// temporary blob, created when the data grows past max, otherwise. Memory
// stays at max bytes whatever the record's size.
type spool struct {
	max    int64
	create func() (blob.Temp, error)
	buf    []byte
	tmp    blob.Temp // nil while the data fits in buf
}

// newSpool returns a spool that keeps up to max bytes in memory; with max
// negative, it starts the temporary blob at once.
func newSpool(max int64, create func() (blob.Temp, error)) (*spool, error) {
	s := &spool{max: max, create: create}
	if max < 0 {
		tmp, err := create()
		if err != nil {
			return nil, err
		}
		s.tmp = tmp
	}
	return s, nil
}

func (s *spool) Write(p []byte) (int, error) {
	if s.tmp == nil {
		if int64(len(s.buf)+len(p)) <= s.max {
			s.buf = append(s.buf, p...)
			return len(p), nil
		}
		tmp, err := s.create()
		if err != nil {
			return 0, err
		}
		s.tmp = tmp
		if _, err := tmp.Write(s.buf); err != nil {
			return 0, err
		}
		s.buf = nil
	}
	return s.tmp.Write(p)
}

// abort removes the temporary blob, if there is one and it was not
// committed.
func (s *spool) abort() {
	if s.tmp != nil {
		s.tmp.Abort()
	}
}

// blobWriteError is an error of the blob store's side of copyData: a
// write that failed (a full disk), as opposed to the request body ending
// badly.
type blobWriteError struct{ err error }

func (e *blobWriteError) Error() string { return e.err.Error() }
func (e *blobWriteError) Unwrap() error { return e.err }

// copyData streams the data packet into w and the digester, failing with
// errBodyTooLarge past max bytes. Reading, hashing and writing run as a
// three-stage pipeline over a few large buffers, so the upload goes at the
// speed of the slowest stage instead of the sum of all three, and memory
// stays at copyBuffers × copyBufferSize whatever the record size.
func copyData(w io.Writer, d *envelope.Digester, r io.Reader, max int64) error {
	type chunk struct {
		b *[]byte
		n int
	}
	free := make(chan *[]byte, copyBuffers)
	for i := 0; i < copyBuffers; i++ {
		free <- copyBufs.Get().(*[]byte)
	}
	hashc := make(chan chunk, copyBuffers)
	writec := make(chan chunk, copyBuffers)
	errc := make(chan error, 1)
	var failed atomic.Bool
	go func() {
		for c := range hashc {
			d.Write((*c.b)[:c.n])
			writec <- c
		}
		close(writec)
	}()
	go func() {
		var err error
		for c := range writec {
			if err == nil {
				if _, err = w.Write((*c.b)[:c.n]); err != nil {
					failed.Store(true)
				}
			}
			free <- c.b
		}
		errc <- err
	}()
	var total int64
	var rerr error
	for !failed.Load() {
		bp := <-free
		buf := *bp
		// Fill the buffer: the part reader hands out small pieces, and
		// the file and the hash want large ones.
		n := 0
		var err error
		for n < len(buf) && err == nil {
			var m int
			m, err = r.Read(buf[n:])
			n += m
		}
		if n > 0 {
			total += int64(n)
			if total > max {
				free <- bp
				rerr = errBodyTooLarge
				break
			}
			hashc <- chunk{bp, n}
		} else {
			free <- bp
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(hashc)
	werr := <-errc
	for i := 0; i < copyBuffers; i++ {
		copyBufs.Put(<-free)
	}
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		return &blobWriteError{werr}
	}
	return nil
}
