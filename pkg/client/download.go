package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// Content streams a granted record from byte offset: the OpenPGP message
// `PKESK to the caller || encrypted data packet`. It returns the body and
// the total size of the message.
func (c *Client) Content(ctx context.Context, recordID string, offset int64) (io.ReadCloser, int64, error) {
	var hdr http.Header
	if offset > 0 {
		hdr = http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}}
	}
	resp, err := c.send(ctx, http.MethodGet, api.Path(api.PathRecordContent, recordID), authKey, nil, "", hdr)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusOK && offset == 0:
		return resp.Body, resp.ContentLength, nil
	case resp.StatusCode == http.StatusPartialContent:
		total := int64(-1)
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if i := strings.LastIndexByte(cr, '/'); i >= 0 {
				if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
					total = n
				}
			}
		}
		return resp.Body, total, nil
	case resp.StatusCode/100 == 2:
		drain(resp)
		return nil, 0, fmt.Errorf("content of %s: the server ignored the range request", recordID)
	}
	defer drain(resp)
	return nil, 0, responseError(resp)
}

// Fetch writes the granted record's OpenPGP message to w, as `gpg
// --decrypt` and any OpenPGP implementation read it.
func (c *Client) Fetch(ctx context.Context, recordID string, w io.Writer) (int64, error) {
	body, _, err := c.Content(ctx, recordID, 0)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return copyBuffered(w, body)
}

func hasKey(keys []*envelope.Key, k *envelope.Key) bool {
	for _, x := range keys {
		if x.Fingerprint() == k.Fingerprint() {
			return true
		}
	}
	return false
}

// Verified is what VerifyRecord and OpenRecord checked.
type Verified struct {
	Record      *api.Record
	Approval    *statement.Approval
	ApprovalKey *envelope.Key
	// Grant and GrantKey are set when the caller holds a grant.
	Grant     *statement.Grant
	GrantInfo *api.Grant
	GrantKey  *envelope.Key
}

// VerifyRecord fetches a record and checks its approval signature; with
// withGrant it also fetches and checks the caller's grant. Approvals and
// grants count only from devices on the user's verified key chain
// (UserChain); sealedTo, if set, are the keys the record was sealed to
// (remembered at seal time), and the approving device must be one of them.
func (c *Client) VerifyRecord(ctx context.Context, recordID string, withGrant bool, sealedTo []*envelope.Key) (*Verified, error) {
	rec, err := c.Record(ctx, recordID)
	if err != nil {
		return nil, err
	}
	if rec.State != api.RecordApproved {
		return nil, verifyErr("record %s is %s, not approved", rec.ID, rec.State)
	}
	ch, err := c.UserChain(ctx, rec.UserID)
	if err != nil {
		return nil, err
	}
	dk, err := chainDevice(ch, rec.DeviceFingerprint)
	if err != nil {
		return nil, err
	}
	if sealedTo != nil && !hasKey(sealedTo, dk) {
		return nil, verifyErr("record %s was approved by device %s, which it was not sealed to", rec.ID, dk.Fingerprint())
	}
	a, err := VerifyApproval(rec, dk)
	if err != nil {
		return nil, err
	}
	if err := c.checkLogged(ctx, "the approval of record "+rec.ID, []byte(rec.DecisionStatement), []byte(rec.DecisionSignature)); err != nil {
		return nil, err
	}
	v := &Verified{Record: rec, Approval: a, ApprovalKey: dk}
	if !withGrant {
		return v, nil
	}
	g, err := c.RecordGrant(ctx, recordID)
	if err != nil {
		return nil, err
	}
	gk := dk
	if g.DeviceFingerprint != "" && g.DeviceFingerprint != dk.Fingerprint() {
		if gk, err = chainDevice(ch, g.DeviceFingerprint); err != nil {
			return nil, err
		}
	}
	st, err := VerifyGrant(g, recordID, c.id.Fingerprint(), gk)
	if err != nil {
		return nil, err
	}
	if err := c.checkLogged(ctx, "grant "+g.ID+" of record "+recordID, []byte(g.Statement), []byte(g.Signature)); err != nil {
		return nil, err
	}
	v.Grant, v.GrantInfo, v.GrantKey = st, g, gk
	return v, nil
}

// OpenOptions tune OpenRecord.
type OpenOptions struct {
	// Trusted, if set, are the keys the record was sealed to (see
	// VerifyRecord); the user's key chain is checked in any case.
	Trusted []*envelope.Key
	// Progress, if set, is called with the running count of message bytes
	// downloaded and the total (-1 if unknown).
	Progress func(n, total int64)
}

// OpenRecord downloads a granted record and decrypts it into the file at
// path in one stream. The file is created only if every check passes: the
// approval and grant signatures, the key packet is the granted one, the
// SHA-256 and size of the downloaded data packet are the approved ones, and
// the OpenPGP integrity check.
func (c *Client) OpenRecord(ctx context.Context, recordID, path string, opts OpenOptions) (*Verified, int64, error) {
	v, body, src, err := c.download(ctx, recordID, opts)
	if err != nil {
		return nil, 0, err
	}
	defer body.Close()
	r, err := OpenVerified(src, v, c.id.Key)
	if err != nil {
		return nil, 0, err
	}
	n, err := envelope.WriteFileAtomic(path, r)
	return v, n, err
}

// OpenRecordTo is OpenRecord for a writer that cannot be taken back (a
// pipe, stdout, a network stream): w gets no byte unless every check
// passes. The message is downloaded into a temporary file in the default
// directory for temporary files (ciphertext only, removed before
// OpenRecordTo returns) and decrypted twice: once to check it, the
// plaintext thrown away, then from the checked copy into w. No plaintext
// is written to disk; the cost is a second decryption and room for the
// ciphertext.
func (c *Client) OpenRecordTo(ctx context.Context, recordID string, w io.Writer, opts OpenOptions) (*Verified, int64, error) {
	v, body, src, err := c.download(ctx, recordID, opts)
	if err != nil {
		return nil, 0, err
	}
	defer body.Close()
	tmp, err := os.CreateTemp("", "keyholder-open-*.pgp")
	if err != nil {
		return nil, 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	r, err := OpenVerified(io.TeeReader(src, tmp), v, c.id.Key)
	if err != nil {
		return nil, 0, err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, 0, err
	}
	// Every check passed on the bytes now in tmp: decrypted again (and
	// checked again), they give the plaintext just checked.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	if r, err = OpenVerified(tmp, v, c.id.Key); err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(w, r)
	return v, n, err
}

// download verifies a granted record (approval and grant) and starts the
// download of its message: body to close, src to read (counted for
// opts.Progress).
func (c *Client) download(ctx context.Context, recordID string, opts OpenOptions) (*Verified, io.Closer, io.Reader, error) {
	v, err := c.VerifyRecord(ctx, recordID, true, opts.Trusted)
	if err != nil {
		return nil, nil, nil, err
	}
	body, total, err := c.Content(ctx, recordID, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	var src io.Reader = body
	if opts.Progress != nil {
		src = &countingReader{r: body, fn: func(n int64) { opts.Progress(n, total) }}
	}
	return v, body, src, nil
}

// OpenVerified decrypts the message src (as Content returns it) with key
// and returns the plaintext stream. The stream ends with io.EOF only if the
// key packet is the one v's grant signed (when v has a grant), the data
// packet has exactly the SHA-256 and size v's approval signed, and the
// OpenPGP integrity check passes; otherwise its last Read fails. Treat what
// was read before a failure as untrusted (envelope.WriteFileAtomic does).
func OpenVerified(src io.Reader, v *Verified, key *envelope.Key) (io.Reader, error) {
	m, err := envelope.Split(src)
	if err != nil {
		return nil, err
	}
	if v.Grant != nil {
		ok := false
		for _, kp := range m.KeyPackets {
			if sha256.Sum256(kp.Raw) == v.Grant.KeyPacketSHA256 {
				ok = true
			}
		}
		if !ok {
			return nil, verifyErr("the downloaded message does not carry the granted key packet")
		}
	}
	d := envelope.NewAsyncDigester()
	m.Data = io.TeeReader(m.Data, d)
	pr, err := m.Open(key)
	if err != nil {
		d.Digest()
		return nil, err
	}
	want := v.Approval.Ciphertext
	return &checkAtEOF{r: pr, cleanup: func() { d.Digest() }, check: func() error {
		got := d.Digest()
		if got.Size != want.Size || !bytes.Equal(got.SHA256[:], want.SHA256[:]) {
			return verifyErr("the downloaded data packet (sha256 %s, %d bytes) is not the approved one (sha256 %s, %d bytes)",
				got.Hex(), got.Size, want.Hex(), want.Size)
		}
		return nil
	}}, nil
}

// checkAtEOF turns the underlying EOF into check's error, if any.
type checkAtEOF struct {
	r       io.Reader
	check   func() error
	cleanup func() // on any other end of the stream
	err     error
}

func (c *checkAtEOF) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	if err == io.EOF {
		if cerr := c.check(); cerr != nil {
			c.err = cerr
			return n, cerr
		}
		c.err = io.EOF
	} else if err != nil {
		c.err = err
		if c.cleanup != nil {
			c.cleanup()
		}
	}
	return n, err
}

// WriteTo copies the plaintext in large blocks (io.Copy and os.File use
// it), so the decryptor and the file see few, large calls.
func (c *checkAtEOF) WriteTo(w io.Writer) (total int64, err error) {
	b := openBuffers.Get().(*[1 << 20]byte)
	buf, used := b[:], 0
	defer func() {
		if err == nil { // see buffers.go
			clear(buf[:used]) // plaintext
			openBuffers.Put(b)
		}
	}()
	for {
		n := 0
		for n < len(buf) && err == nil {
			var m int
			m, err = c.Read(buf[n:])
			n += m
		}
		used = max(used, n)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
