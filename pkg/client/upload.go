package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// PrivateMetadata travels sealed to the user's keys beside a record: the
// server stores it but cannot read it; the device shows it to the user.
type PrivateMetadata struct {
	Title    string `json:"title,omitempty"`
	Filename string `json:"filename,omitempty"`
}

// UploadOptions describe a record upload.
type UploadOptions struct {
	// ContentType of the plaintext (default application/octet-stream).
	ContentType string
	// Size is the declared plaintext size (0 when unknown).
	Size int64
	// Purpose is the public reason for the submission, shown to the user.
	Purpose string
	// Private, if set, is sealed to the user's keys and sent beside the record.
	Private *PrivateMetadata
	// Profile of the record (default envelope.Compat).
	Profile envelope.Profile
	// IdempotencyKey makes a retried upload safe.
	IdempotencyKey string
	// Recipients, if set, are the keys to seal to instead of the ones
	// GET /v1/users/{user}/keys returns (a caller that pins keys).
	Recipients []*envelope.Key
	// Progress, if set, is called with the running count of plaintext
	// (SealAndUpload) or message (Upload) bytes sent.
	Progress func(n int64)
}

// Uploaded is the outcome of an upload.
type Uploaded struct {
	Record     *api.Record
	Recipients []*envelope.Key
	Digest     envelope.DataDigest
	// SessionKeyID is the record's session key id when SealAndUpload
	// sealed it (zero for Upload, and when Existing): the device's
	// approval must carry it.
	SessionKeyID [32]byte
	// Statement and Signature are the submission sent (nil when Existing).
	Statement []byte
	Signature []byte
	// Existing is set when the server already held the upload of this
	// IdempotencyKey (an earlier attempt whose answer was lost): nothing
	// was sent again, and Record is that upload's record.
	Existing bool
}

// RecipientKeys returns the keys a record for the user must be sealed to:
// the active devices and the recovery key of the user's verified key chain
// (UserChain), never a key the server merely lists.
func (c *Client) RecipientKeys(ctx context.Context, userID string) ([]*envelope.Key, error) {
	ch, err := c.UserChain(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := ch.Recipients()
	if len(ch.Devices()) == 0 {
		return nil, fmt.Errorf("user %s has no active device on its key chain", userID)
	}
	return out, nil
}

type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.fn(c.n)
	}
	return n, err
}

// SealAndUpload encrypts plaintext to the user's keys and uploads it in
// one stream: the sealed message is written into the body part of the
// multipart request as it is produced, and the submission statement, which
// covers the ciphertext digest, is signed and sent after it. Nothing is
// buffered beyond a few hundred KiB, whatever the size of the record.
func (c *Client) SealAndUpload(ctx context.Context, userID string, plaintext io.Reader, opts UploadOptions) (*Uploaded, error) {
	if opts.Profile == "" {
		opts.Profile = envelope.Compat
	}
	if opts.Progress != nil {
		plaintext = &countingReader{r: plaintext, fn: opts.Progress}
	}
	return c.upload(ctx, userID, opts, func(w io.Writer, recips []*envelope.Key) (sealed, error) {
		sw, err := envelope.Seal(w, opts.Profile, recips...)
		if err != nil {
			return sealed{}, err
		}
		if _, err := copyBuffered(sw, plaintext); err != nil {
			// Close ends the modern profile's background writer, which
			// writes to w; the upload fails all the same.
			sw.Close()
			return sealed{}, fmt.Errorf("reading plaintext: %w", err)
		}
		if err := sw.Close(); err != nil {
			return sealed{}, err
		}
		return sealed{keyPackets: sw.KeyPackets(), data: sw.Digest(), sessionKeyID: sw.SessionKeyID()}, nil
	})
}

// Upload sends an OpenPGP message that is already sealed to the user's keys
// (PKESK+ || SEIPD, as `gpg --encrypt` or envelope.Seal make it), streaming
// it and signing the submission statement over its key packets and data
// packet. The message must be addressed to exactly the keys of the user's
// verified key chain (RecipientKeys), one key packet each.
func (c *Client) Upload(ctx context.Context, userID string, message io.Reader, opts UploadOptions) (*Uploaded, error) {
	if opts.Progress != nil {
		message = &countingReader{r: message, fn: opts.Progress}
	}
	return c.upload(ctx, userID, opts, func(w io.Writer, recips []*envelope.Key) (sealed, error) {
		m, err := envelope.Split(message)
		if err != nil {
			return sealed{}, err
		}
		if err := addressedTo(m.KeyPackets, recips); err != nil {
			return sealed{}, err
		}
		for _, kp := range m.KeyPackets {
			if _, err := w.Write(kp.Raw); err != nil {
				return sealed{}, err
			}
		}
		d := envelope.NewDigester()
		if _, err := copyBuffered(io.MultiWriter(w, d), m.Data); err != nil {
			return sealed{}, err
		}
		return sealed{keyPackets: envelope.KeyPacketsDigest(m.KeyPackets), data: d.Digest()}, nil
	})
}

// sealed is what a body writer reports of the message it wrote.
type sealed struct {
	keyPackets   [32]byte
	data         envelope.DataDigest
	sessionKeyID [32]byte // zero when the message was sealed elsewhere
}

// addressedTo checks that kps are one key packet for each of keys and
// nothing else.
func addressedTo(kps []*envelope.KeyPacket, keys []*envelope.Key) error {
	if len(kps) != len(keys) {
		return fmt.Errorf("the message has %d key packets; the user's key chain has %d keys", len(kps), len(keys))
	}
	for _, k := range keys {
		n := 0
		for _, kp := range kps {
			if kp.For(k) {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("the message has %d key packets for key %s of the user's key chain, want 1", n, k.Fingerprint())
		}
	}
	return nil
}

var errUploadDone = errors.New("upload finished")

// existingUpload reports prev, the record the party uploaded before with
// key, as the outcome of this upload if it is the same upload: the same
// user and the same public metadata (the ciphertext of a record sealed
// again differs). Else the key was used for something else.
func existingUpload(prev *api.Record, userID string, meta []byte, recips []*envelope.Key, key string) (*Uploaded, error) {
	if prev.UserID != userID || prev.Metadata != string(meta) {
		return nil, fmt.Errorf("the Idempotency-Key %q was used for record %s, a different upload (another user or other metadata); use a new key", key, prev.ID)
	}
	out := &Uploaded{Record: prev, Recipients: recips, Existing: true}
	if b, err := hex.DecodeString(prev.CiphertextSHA256); err == nil && len(b) == len(out.Digest.SHA256) {
		copy(out.Digest.SHA256[:], b)
		out.Digest.Size = prev.CiphertextSize
	}
	return out, nil
}

func createPart(mw *multipart.Writer, name, contentType string) (io.Writer, error) {
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"`, name))
	h.Set("Content-Type", contentType)
	return mw.CreatePart(h)
}

func (c *Client) upload(ctx context.Context, userID string, opts UploadOptions,
	writeBody func(io.Writer, []*envelope.Key) (sealed, error)) (*Uploaded, error) {
	if c.id == nil {
		return nil, errors.New("client: uploading needs a party key")
	}
	recips := opts.Recipients
	if len(recips) == 0 {
		var err error
		if recips, err = c.RecipientKeys(ctx, userID); err != nil {
			return nil, err
		}
	}
	ct := opts.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	meta, err := json.Marshal(api.Metadata{ContentType: ct, Size: opts.Size, Purpose: opts.Purpose})
	if err != nil {
		return nil, err
	}
	var private []byte
	if opts.Private != nil && (*opts.Private != PrivateMetadata{}) {
		pj, err := json.Marshal(opts.Private)
		if err != nil {
			return nil, err
		}
		profile := opts.Profile
		if profile == "" {
			profile = envelope.Compat
		}
		var buf bytes.Buffer
		sw, err := envelope.Seal(&buf, profile, recips...)
		if err != nil {
			return nil, err
		}
		if _, err := sw.Write(pj); err != nil {
			return nil, err
		}
		if err := sw.Close(); err != nil {
			return nil, err
		}
		private = buf.Bytes()
	}
	metaDigest := statement.MetadataDigest(meta, private)
	// A fresh token now: a streamed body cannot be replayed after a 401.
	if _, _, err := c.bearer(ctx); err != nil {
		return nil, err
	}
	// A retry whose first attempt reached the server: report that record
	// instead of sealing (a new ciphertext) and sending it all again.
	if opts.IdempotencyKey != "" {
		prev, err := c.RecordByIdempotencyKey(ctx, opts.IdempotencyKey)
		if err != nil {
			return nil, err
		}
		if prev != nil {
			return existingUpload(prev, userID, meta, recips, opts.IdempotencyKey)
		}
	}

	out := &Uploaded{Recipients: recips}
	pr, pw := io.Pipe()
	bw := bodyWriters.Get().(*bufio.Writer)
	bw.Reset(pw)
	mw := multipart.NewWriter(bw)
	errc := make(chan error, 1)
	go func() {
		err := func() error {
			w, err := createPart(mw, api.PartMetadata, "application/json")
			if err != nil {
				return err
			}
			if _, err := w.Write(meta); err != nil {
				return err
			}
			if private != nil {
				if w, err = createPart(mw, api.PartPrivate, "application/pgp-encrypted"); err != nil {
					return err
				}
				if _, err := w.Write(private); err != nil {
					return err
				}
			}
			if w, err = createPart(mw, api.PartBody, "application/pgp-encrypted"); err != nil {
				return err
			}
			sl, err := writeBody(w, recips)
			if err != nil {
				return err
			}
			dig := sl.data
			out.SessionKeyID = sl.sessionKeyID
			sub := statement.Submission{User: userID, Submitter: c.id.Fingerprint(), KeyPackets: sl.keyPackets, Ciphertext: dig,
				MetadataSHA256: metaDigest}
			stmt, err := sub.Marshal()
			if err != nil {
				return err
			}
			sig, err := statement.Sign(stmt, c.id.Key)
			if err != nil {
				return err
			}
			out.Digest, out.Statement, out.Signature = dig, stmt, sig
			if w, err = createPart(mw, api.PartStatement, "text/plain; charset=utf-8"); err != nil {
				return err
			}
			if _, err := w.Write(stmt); err != nil {
				return err
			}
			if w, err = createPart(mw, api.PartSignature, "application/pgp-signature"); err != nil {
				return err
			}
			if _, err := w.Write(sig); err != nil {
				return err
			}
			if err := mw.Close(); err != nil {
				return err
			}
			return bw.Flush()
		}()
		pw.CloseWithError(err)
		if err == nil {
			bw.Reset(nil) // nothing writes to it any more
			bodyWriters.Put(bw)
		}
		errc <- err
	}()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(api.Path(api.PathUserRecords, userID)), pr)
	if err != nil {
		pr.CloseWithError(err)
		<-errc
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if opts.IdempotencyKey != "" {
		req.Header.Set(api.HeaderIdempotencyKey, opts.IdempotencyKey)
	}
	if _, err := c.authorize(ctx, req, authKey); err != nil {
		pr.CloseWithError(err)
		<-errc
		return nil, err
	}
	resp, err := c.do(req)
	pr.CloseWithError(errUploadDone) // unblocks the writer if the server stopped reading
	werr := <-errc
	if err != nil {
		if werr != nil && !errors.Is(werr, errUploadDone) && !errors.Is(werr, io.ErrClosedPipe) {
			return nil, werr
		}
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		err := responseError(resp)
		var e *Error
		if errors.As(err, &e) && e.Type == api.ProblemIdempotencyKeyReused && e.RecordID != "" {
			// The first attempt committed while this one was on its way.
			prev, rerr := c.Record(ctx, e.RecordID)
			if rerr != nil {
				return nil, err
			}
			return existingUpload(prev, userID, meta, recips, opts.IdempotencyKey)
		}
		return nil, err
	}
	if werr != nil {
		return nil, werr
	}
	var rec api.Record
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rec); err != nil {
		return nil, fmt.Errorf("upload: decoding response: %w", err)
	}
	out.Record = &rec
	return out, nil
}
