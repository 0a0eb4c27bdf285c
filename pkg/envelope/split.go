package envelope

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Limits on the key packets Split accepts. A record has one key packet per
// device key plus an optional recovery key, so these leave ample room while
// bounding what an attacker can make the server buffer.
const (
	MaxKeyPackets    = 16
	MaxKeyPacketSize = 4096
)

// OpenPGP packet tags (RFC 9580, section 5).
const (
	tagPKESK     = 1
	tagSignature = 2
	tagSKESK     = 3
	tagOnePass   = 4
	tagSE        = 9 // symmetrically encrypted data without integrity protection
	tagMarker    = 10
	tagCompress  = 8
	tagLiteral   = 11
	tagSEIPD     = 18
	tagAEAD      = 20 // LibrePGP OCB packet, not RFC 9580
)

// A KeyPacket is one public-key encrypted session key packet (PKESK), kept
// byte for byte as it appeared in the message.
type KeyPacket struct {
	// Raw is the whole packet, header included.
	Raw []byte
	// Version is the PKESK version: 3 (with SEIPDv1) or 6 (with SEIPDv2).
	Version int
	// KeyID is the recipient key id (v3, or derived from the fingerprint in v6).
	// Zero means an anonymous recipient, which Keyholder never writes.
	KeyID uint64
	// Fingerprint is the recipient key fingerprint (v6 only).
	Fingerprint []byte
	// Algorithm is the public-key algorithm id.
	Algorithm packet.PublicKeyAlgorithm
}

// ParseKeyPacket parses a single serialized PKESK packet, such as the one a
// device receives with an approval request.
func ParseKeyPacket(raw []byte) (*KeyPacket, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	kp, err := readKeyPacket(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, wrapf(ErrMalformed, "empty key packet")
		}
		return nil, err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, wrapf(ErrMalformed, "trailing data after key packet")
	}
	return kp, nil
}

func (kp *KeyPacket) matches(pub *packet.PublicKey) bool {
	if kp.Version == 6 && kp.Fingerprint != nil {
		return bytes.Equal(kp.Fingerprint, pub.Fingerprint)
	}
	return kp.KeyID != 0 && kp.KeyID == pub.KeyId
}

// For reports whether the key packet is addressed to one of key's
// encryption keys.
func (kp *KeyPacket) For(key *Key) bool { return key.addressedBy(kp) }

// parse decodes the packet body with go-crypto, which validates its fields.
func (kp *KeyPacket) parse() (*packet.EncryptedKey, error) {
	p, err := packet.Read(bytes.NewReader(kp.Raw))
	if err != nil {
		return nil, wrapf(ErrMalformed, "key packet: %v", err)
	}
	ek, ok := p.(*packet.EncryptedKey)
	if !ok {
		return nil, wrapf(ErrMalformed, "key packet parsed as %T", p)
	}
	return ek, nil
}

// A Message is a split OpenPGP message: its key packets, read into memory,
// and its encrypted data packet as a stream.
type Message struct {
	KeyPackets []*KeyPacket
	// DataVersion is the SEIPD packet version: 1 (compat) or 2 (modern).
	DataVersion int
	// Data yields the encrypted data packet exactly as it appears in the
	// message, header included. It returns an error wrapping ErrMalformed
	// if the packet is truncated or anything follows it.
	Data io.Reader
}

// Profile returns the record profile that matches the data packet version.
func (m *Message) Profile() Profile {
	if m.DataVersion == 2 {
		return Modern
	}
	return Compat
}

// armorStart is how an ASCII-armored message begins.
const armorStart = "-----BEGIN PGP"

// Split reads the key packets of an OpenPGP message and returns them with a
// stream of the encrypted data packet, without buffering the body. Only
// messages of the form PKESK{1,MaxKeyPackets} || SEIPD are accepted; every
// other shape yields an error wrapping ErrMalformed or ErrUnsupported.
// Each key packet's version must match the data packet version.
func Split(r io.Reader) (*Message, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, readBufferSize(r))
	}
	m := &Message{}
	// A common mistake deserves its own message: "invalid packet header
	// octet 0x2d" does not say that the message is armored.
	if b, err := br.Peek(len(armorStart)); err == nil && string(b) == armorStart {
		return nil, wrapf(ErrMalformed, "the message is ASCII-armored; send the binary message (gpg --dearmor, or seal without --armor)")
	}
	for {
		tag, err := peekTag(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(m.KeyPackets) == 0 {
					return nil, wrapf(ErrMalformed, "empty input")
				}
				return nil, wrapf(ErrMalformed, "message ends after %d key packets, with no encrypted data packet", len(m.KeyPackets))
			}
			return nil, err
		}
		if tag != tagPKESK {
			if err := checkDataTag(tag, len(m.KeyPackets)); err != nil {
				return nil, err
			}
			break
		}
		if len(m.KeyPackets) == MaxKeyPackets {
			return nil, wrapf(ErrMalformed, "more than %d key packets", MaxKeyPackets)
		}
		kp, err := readKeyPacket(br)
		if err != nil {
			return nil, err
		}
		m.KeyPackets = append(m.KeyPackets, kp)
	}
	d, err := newDataReader(br)
	if err != nil {
		return nil, err
	}
	m.DataVersion = d.version
	m.Data = d
	want := 3
	if m.DataVersion == 2 {
		want = 6
	}
	for i, kp := range m.KeyPackets {
		if kp.Version != want {
			return nil, wrapf(ErrProfileMismatch, "key packet %d is v%d, but SEIPDv%d needs v%d", i+1, kp.Version, m.DataVersion, want)
		}
	}
	return m, nil
}

func checkDataTag(tag byte, nKeys int) error {
	switch tag {
	case tagSEIPD:
		if nKeys == 0 {
			return wrapf(ErrMalformed, "encrypted data packet with no key packet before it")
		}
		return nil
	case tagSKESK:
		return wrapf(ErrUnsupported, "password-encrypted session key (SKESK) packets are not accepted")
	case tagSE:
		return wrapf(ErrUnsupported, "encrypted data without integrity protection (tag 9) is not accepted")
	case tagAEAD:
		return wrapf(ErrUnsupported, "LibrePGP OCB encrypted data (tag 20) is not accepted; use SEIPD")
	case tagLiteral, tagCompress, tagSignature, tagOnePass:
		return wrapf(ErrMalformed, "packet with tag %d at top level: the message is not encrypted", tag)
	}
	return wrapf(ErrMalformed, "unexpected packet with tag %d", tag)
}

// readBufferSize is the buffer Split puts under a reader that has none: 64
// KiB, or what an in-memory reader holds if that is less. A small record's
// upload would otherwise allocate (and the kernel fault in) 64 KiB per
// message for a few hundred bytes. Only peeks of a few bytes and reads of
// key packets go through the buffer; large reads of the data packet pass
// it by, so its size bounds syscalls, not correctness.
func readBufferSize(r io.Reader) int {
	const size = 64 << 10
	if l, ok := r.(interface{ Len() int }); ok && l.Len() < size {
		return max(l.Len(), 16) // bufio's minimum
	}
	return size
}

// peekTag returns the tag of the next packet without consuming it.
func peekTag(br *bufio.Reader) (byte, error) {
	b, err := br.Peek(1)
	if err != nil {
		return 0, err
	}
	if b[0]&0x80 == 0 {
		return 0, wrapf(ErrMalformed, "invalid packet header octet 0x%02x", b[0])
	}
	if b[0]&0x40 != 0 {
		return b[0] & 0x3f, nil
	}
	return (b[0] >> 2) & 0x0f, nil
}

// header is a decoded packet header.
type header struct {
	tag     byte
	raw     []byte // the header octets
	length  int64  // body length of this (first) chunk; -1 if indeterminate
	partial bool   // a partial body length: more chunks follow
}

// readHeader decodes one packet header from br (old or new format).
func readHeader(br *bufio.Reader) (header, error) {
	var h header
	first, err := br.ReadByte()
	if err != nil {
		return h, err
	}
	h.raw = append(h.raw, first)
	if first&0x80 == 0 {
		return h, wrapf(ErrMalformed, "invalid packet header octet 0x%02x", first)
	}
	if first&0x40 == 0 { // old format
		h.tag = (first >> 2) & 0x0f
		var n int
		switch first & 3 {
		case 0:
			n = 1
		case 1:
			n = 2
		case 2:
			n = 4
		case 3:
			h.length = -1
			return h, nil
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(br, buf); err != nil {
			return h, truncated("packet header", err)
		}
		h.raw = append(h.raw, buf...)
		var l uint32
		for _, b := range buf {
			l = l<<8 | uint32(b)
		}
		h.length = int64(l)
		return h, nil
	}
	h.tag = first & 0x3f
	l, partial, raw, err := readNewLength(br)
	h.raw = append(h.raw, raw...)
	h.length, h.partial = l, partial
	return h, err
}

// readNewLength decodes a new-format body length.
func readNewLength(br *bufio.Reader) (length int64, partial bool, raw []byte, err error) {
	b0, err := br.ReadByte()
	if err != nil {
		return 0, false, nil, truncated("packet length", err)
	}
	raw = []byte{b0}
	switch {
	case b0 < 192:
		return int64(b0), false, raw, nil
	case b0 < 224:
		b1, err := br.ReadByte()
		if err != nil {
			return 0, false, raw, truncated("packet length", err)
		}
		raw = append(raw, b1)
		return (int64(b0)-192)<<8 + int64(b1) + 192, false, raw, nil
	case b0 < 255:
		return 1 << (b0 & 0x1f), true, raw, nil
	default:
		var buf [4]byte
		if _, err := io.ReadFull(br, buf[:]); err != nil {
			return 0, false, raw, truncated("packet length", err)
		}
		raw = append(raw, buf[:]...)
		return int64(binary.BigEndian.Uint32(buf[:])), false, raw, nil
	}
}

func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return wrapf(ErrMalformed, "truncated %s", what)
	}
	return fmt.Errorf("envelope: reading %s: %w", what, err)
}

// readKeyPacket reads one whole PKESK packet into memory.
func readKeyPacket(br *bufio.Reader) (*KeyPacket, error) {
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	if h.tag != tagPKESK {
		return nil, wrapf(ErrMalformed, "expected a key packet, found tag %d", h.tag)
	}
	if h.partial || h.length < 0 {
		return nil, wrapf(ErrMalformed, "key packet with partial or indeterminate length")
	}
	if h.length > MaxKeyPacketSize {
		return nil, wrapf(ErrMalformed, "key packet of %d bytes exceeds %d", h.length, MaxKeyPacketSize)
	}
	raw := make([]byte, len(h.raw)+int(h.length))
	copy(raw, h.raw)
	if _, err := io.ReadFull(br, raw[len(h.raw):]); err != nil {
		return nil, truncated("key packet", err)
	}
	kp := &KeyPacket{Raw: raw}
	ek, err := kp.parse()
	if err != nil {
		return nil, err
	}
	if err := checkCanonicalKeyPacket(raw[len(h.raw):], ek); err != nil {
		return nil, err
	}
	kp.Version, kp.KeyID, kp.Algorithm = ek.Version, ek.KeyId, ek.Algo
	kp.Fingerprint = ek.KeyFingerprint
	return kp, nil
}

// dataReader streams the encrypted data packet verbatim while following its
// length framing, so that a truncated packet or trailing bytes are errors.
type dataReader struct {
	br        *bufio.Reader
	pending   []byte // header or length octets not yet returned
	remaining int64  // body octets left in the current chunk; -1: to EOF
	partial   bool   // current chunk is a partial body chunk
	done      bool
	err       error
	version   int
}

func newDataReader(br *bufio.Reader) (*dataReader, error) {
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	if h.length == 0 {
		return nil, wrapf(ErrMalformed, "empty encrypted data packet")
	}
	v, err := br.Peek(1)
	if err != nil {
		return nil, truncated("encrypted data packet", err)
	}
	if v[0] != 1 && v[0] != 2 {
		return nil, wrapf(ErrUnsupported, "encrypted data packet version %d", v[0])
	}
	return &dataReader{br: br, pending: h.raw, remaining: h.length, partial: h.partial, version: int(v[0])}, nil
}

func (d *dataReader) Read(p []byte) (int, error) {
	if len(d.pending) > 0 {
		n := copy(p, d.pending)
		d.pending = d.pending[n:]
		return n, nil
	}
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	if d.remaining == 0 {
		if d.partial {
			l, partial, raw, err := readNewLength(d.br)
			if err != nil {
				d.err = err
				return 0, err
			}
			d.remaining, d.partial, d.pending = l, partial, raw
			return d.Read(p)
		}
		// End of packet: nothing may follow it.
		if _, err := d.br.ReadByte(); err == nil {
			d.err = wrapf(ErrMalformed, "data after the encrypted data packet")
			return 0, d.err
		} else if err != io.EOF {
			d.err = err
			return 0, err
		}
		d.done = true
		return 0, io.EOF
	}
	if d.remaining > 0 && int64(len(p)) > d.remaining {
		p = p[:d.remaining]
	}
	n, err := d.br.Read(p)
	if d.remaining > 0 {
		d.remaining -= int64(n)
	}
	if err == io.EOF {
		if d.remaining < 0 { // indeterminate length runs to EOF
			d.done = true
			return n, io.EOF
		}
		if d.remaining > 0 || d.partial {
			d.err = wrapf(ErrMalformed, "truncated encrypted data packet")
			if n > 0 {
				return n, nil
			}
			return 0, d.err
		}
		err = nil
	}
	return n, err
}

// checkCanonicalKeyPacket refuses key packet bodies that go-crypto parses
// leniently, so that a key packet cannot be altered without changing what
// it decrypts to: go-crypto ignores trailing bytes, the v6 field-size octet,
// the bit count of an MPI within its octet count, the 0x40 prefix of a
// Curve25519 point and the top bit of an X25519 u-coordinate (RFC 7748 masks
// it). Every honest encoder writes these fields in one way only; a server
// or an attacker changing one would give the same key packet many hashes.
// Algorithms Keyholder never decrypts with are left to go-crypto's parser.
func checkCanonicalKeyPacket(body []byte, ek *packet.EncryptedKey) error {
	bad := func(what string) error { return wrapf(ErrMalformed, "non-canonical key packet: %s", what) }
	b := body[1:] // version, checked by go-crypto
	switch ek.Version {
	case 3:
		b = b[8:]
	case 6:
		n := int(b[0])
		switch {
		case n == 0:
		case n == 1+20 && ek.KeyVersion == 4, n == 1+32 && ek.KeyVersion == 6:
		default:
			return bad("v6 recipient field size")
		}
		b = b[1+n:]
	}
	b = b[1:] // algorithm
	switch ek.Algo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly:
		_, rest, err := canonicalMPI(b)
		if err != nil {
			return bad(err.Error())
		}
		b = rest
	case packet.PubKeyAlgoECDH:
		point, rest, err := canonicalMPI(b)
		if err != nil {
			return bad(err.Error())
		}
		if point[0] == 0x40 && (len(point) != 33 || point[32]&0x80 != 0) {
			return bad("Curve25519 point")
		}
		if point[0] != 0x40 && point[0] != 0x04 {
			return bad("point encoding")
		}
		if len(rest) < 1 || len(rest) != 1+int(rest[0]) {
			return bad("wrapped key length")
		}
		b = nil
	case packet.PubKeyAlgoX25519:
		if len(b) < 33 || b[31]&0x80 != 0 || len(b) != 33+int(b[32]) {
			return bad("X25519 fields")
		}
		b = nil
	default:
		return nil
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return nil
}

// canonicalMPI reads an MPI whose bit count is exactly the bit length of
// its value (RFC 9580, section 3.2), and returns its value and what follows.
func canonicalMPI(b []byte) (value, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, errors.New("truncated MPI")
	}
	bits := int(binary.BigEndian.Uint16(b))
	n := (bits + 7) / 8
	if n == 0 || len(b) < 2+n {
		return nil, nil, errors.New("empty or truncated MPI")
	}
	v := b[2 : 2+n]
	if v[0] == 0 || bits != (n-1)*8+bitLen8(v[0]) {
		return nil, nil, errors.New("MPI bit count")
	}
	return v, b[2+n:], nil
}

func bitLen8(x byte) int {
	n := 0
	for ; x != 0; x >>= 1 {
		n++
	}
	return n
}
