package envelope

import (
	"bytes"
	"errors"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/atomicfile"
	"github.com/keyholder/keyholder/pkg/envelope/internal/errs"
	"github.com/keyholder/keyholder/pkg/envelope/internal/seipd1"
)

// Open decrypts an OpenPGP message of the form PKESK+ || SEIPD with the
// first of identities that a key packet is addressed to, and returns a
// stream of the plaintext.
//
// The plaintext is released before the integrity check at the end of the
// data packet (SEIPDv1 checks it only at the end). A Read returns an error
// wrapping ErrIntegrity if the check fails or the message is truncated; a
// caller must treat everything read before such an error as untrusted and
// discard it. [OpenFile] does that for files.
func Open(src io.Reader, identities ...*Key) (io.Reader, error) {
	msg, err := Split(src)
	if err != nil {
		return nil, err
	}
	return msg.Open(identities...)
}

// Open decrypts the split message with the first of identities that one of
// its key packets is addressed to. See [Open].
func (m *Message) Open(identities ...*Key) (io.Reader, error) {
	profile := m.Profile()
	var ek *packet.EncryptedKey
	var lastErr error = ErrNoMatchingKey
	for _, kp := range m.KeyPackets {
		for _, id := range identities {
			if !id.addressedBy(kp) {
				continue
			}
			k, err := unwrap(kp, profile, id)
			if err != nil {
				lastErr = err
				continue
			}
			ek = k
			break
		}
		if ek != nil {
			break
		}
	}
	if ek == nil {
		return nil, lastErr
	}
	defer clear(ek.Key)
	p, err := packet.Read(m.Data)
	if err != nil {
		return nil, wrapf(ErrMalformed, "encrypted data packet: %v", err)
	}
	se, ok := p.(*packet.SymmetricallyEncrypted)
	if !ok {
		return nil, wrapf(ErrMalformed, "expected an encrypted data packet, read %T", p)
	}
	var dec io.ReadCloser
	if m.DataVersion == 2 {
		dec, err = se.Decrypt(0, ek.Key)
	} else {
		dec, err = newSEIPDv1Reader(se, ek.CipherFunc, ek.Key)
	}
	if err != nil {
		return nil, wrapf(ErrIntegrity, "decrypting data packet: %v", err)
	}
	body, err := literalBody(dec)
	if err != nil {
		if !errors.Is(err, ErrIntegrity) && m.DataVersion == 1 {
			// A wrong session key (a key packet from another record) also
			// decrypts to garbage that may look like some other packet;
			// SEIPDv1 can only tell the two apart at the MDC. An integrity
			// failure is the more useful answer, so check it first.
			if _, cerr := io.Copy(io.Discard, dec); cerr != nil {
				err = integrityError(cerr)
			} else if cerr := dec.Close(); cerr != nil {
				err = integrityError(cerr)
			}
		}
		dec.Close()
		return nil, err
	}
	return &openReader{body: body, dec: dec, data: m.Data}, nil
}

// literalBody reads the packets at the start of the decrypted stream and
// returns the literal data body, looking through one compression layer
// (GnuPG compresses by default).
func literalBody(r io.Reader) (io.Reader, error) {
	for depth := 0; depth < 2; depth++ {
		// Look at the tag before handing the packet to go-crypto: it reads
		// some packets (user ids, user attributes) whole into memory, and
		// their length is the sender's to choose.
		var first [1]byte
		if _, err := io.ReadFull(r, first[:]); err != nil {
			return nil, wrapf(ErrIntegrity, "reading decrypted packets: %v", err)
		}
		if first[0]&0x80 == 0 {
			return nil, wrapf(ErrIntegrity, "decrypted data does not start with a packet header")
		}
		tag := first[0] & 0x3f
		if first[0]&0x40 == 0 {
			tag = (first[0] >> 2) & 0x0f
		}
		if tag != tagLiteral && tag != tagCompress {
			return nil, wrapf(ErrUnsupported, "encrypted message holds a packet with tag %d, not literal data", tag)
		}
		p, err := packet.Read(io.MultiReader(bytes.NewReader(first[:]), r))
		if err != nil {
			return nil, wrapf(ErrIntegrity, "reading decrypted packets: %v", err)
		}
		switch p := p.(type) {
		case *packet.LiteralData:
			return p.Body, nil
		case *packet.Compressed:
			r = p.Body
		default:
			return nil, wrapf(ErrUnsupported, "encrypted message holds a %T, not literal data", p)
		}
	}
	return nil, wrapf(ErrUnsupported, "nested compression")
}

// openReader returns plaintext and turns the end of the literal data into
// the integrity check of the data packet.
type openReader struct {
	body io.Reader
	dec  io.ReadCloser
	data io.Reader
	err  error
}

func (o *openReader) Read(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.body.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		o.err = o.finish()
	} else {
		o.err = integrityError(err)
	}
	if n > 0 && o.err == io.EOF {
		return n, nil
	}
	return n, o.err
}

// finish verifies the MDC or final AEAD tag and that nothing follows the
// data packet; it returns io.EOF when all is well.
func (o *openReader) finish() error {
	// Read what follows the literal data inside the encrypted packet
	// (RFC 9580 padding packets, say) so that Close checks the MDC or the
	// final AEAD tag over the whole packet, not over the chunks read so far.
	if _, err := io.Copy(io.Discard, o.dec); err != nil {
		return integrityError(err)
	}
	if err := o.dec.Close(); err != nil {
		return integrityError(err)
	}
	if _, err := io.Copy(io.Discard, o.data); err != nil {
		return err
	}
	return io.EOF
}

func integrityError(err error) error { return errs.IntegrityError(err) }

// OpenFile decrypts src like [Open] into the file at path, which is created
// (or replaced) only if the whole message decrypted and passed its integrity
// check: the plaintext goes to a temporary file in the same directory,
// which is synced and renamed into place at the end, and removed on any
// error. It returns the number of plaintext bytes written.
func OpenFile(path string, src io.Reader, identities ...*Key) (int64, error) {
	r, err := Open(src, identities...)
	if err != nil {
		return 0, err
	}
	return WriteFileAtomic(path, r)
}

// WriteFileAtomic copies r into a temporary file beside path and renames
// it to path only if r ended without error, syncing the file and the
// directory (see package atomicfile). The file's mode is 0600.
func WriteFileAtomic(path string, r io.Reader) (n int64, err error) {
	return atomicfile.Write(path, r, 0o600)
}

// newSEIPDv1Reader checks what the seipd1 package takes for granted (the
// packet version, an AES cipher, a key of its size) and decrypts se.
func newSEIPDv1Reader(se *packet.SymmetricallyEncrypted, c packet.CipherFunction, key []byte) (io.ReadCloser, error) {
	if se.Version != 1 {
		return nil, wrapf(ErrUnsupported, "encrypted data packet version %d, expected 1", se.Version)
	}
	switch c {
	case packet.CipherAES128, packet.CipherAES192, packet.CipherAES256:
	default:
		return nil, wrapf(ErrUnsupported, "SEIPDv1 cipher %d (only AES is accepted)", c)
	}
	if len(key) != c.KeySize() {
		return nil, wrapf(ErrMalformed, "session key of %d octets for cipher %d", len(key), c)
	}
	return seipd1.NewReader(se.Contents, key)
}
