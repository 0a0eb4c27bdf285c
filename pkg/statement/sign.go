package statement

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// maxSignatureSize bounds the signature input Verify reads. A signature from
// an accepted key (RSA-4096 at most) is well under 2 KiB armored.
const maxSignatureSize = 16 << 10

// maxClockSkew is how far in the future a signature's creation time may lie:
// phones' clocks drift, but a signature dated much later than now was not
// made by an honest signer.
const maxClockSkew = 5 * time.Minute

const (
	sigArmorBegin = "-----BEGIN PGP SIGNATURE-----"
	sigArmorEnd   = "-----END PGP SIGNATURE-----"
)

// Sign returns an ASCII-armored detached OpenPGP signature over the exact
// bytes of statement, made with signer's signing key: signature type 0x00
// (binary document), SHA-256 (SHA-384 or SHA-512 for keys on larger
// curves), creation time now. `gpg --verify statement.sig statement`
// accepts it.
//
// Sign refuses to sign anything that is not a canonical statement (an
// error wrapping ErrStatement), so a device key can never be made to sign
// arbitrary bytes through it. signer must hold its private key
// (envelope.ErrNoPrivateKey) and be unlocked (envelope.ErrKeyLocked).
func Sign(statement []byte, signer *envelope.Key) ([]byte, error) {
	return signAt(statement, signer, time.Now())
}

func signAt(statement []byte, signer *envelope.Key, now time.Time) ([]byte, error) {
	if signer == nil {
		return nil, envelope.ErrNoPrivateKey
	}
	if _, err := ParseStatement(statement); err != nil {
		return nil, err
	}
	priv, err := signer.SigningKey()
	if err != nil {
		return nil, err
	}
	h := signatureHash(&priv.PublicKey)
	cfg := &packet.Config{DefaultHash: h, Time: func() time.Time { return now }}
	keyID := priv.KeyId
	sig := &packet.Signature{
		Version:           priv.PublicKey.Version,
		SigType:           packet.SigTypeBinary,
		PubKeyAlgo:        priv.PubKeyAlgo,
		Hash:              h,
		CreationTime:      time.Unix(now.Unix(), 0),
		IssuerKeyId:       &keyID,
		IssuerKeyVersion:  uint8(priv.PublicKey.Version),
		IssuerFingerprint: priv.PublicKey.Fingerprint,
	}
	hh, err := sig.PrepareSign(cfg)
	if err != nil {
		return nil, fmt.Errorf("envelope: preparing signature: %w", err)
	}
	hh.Write(statement)
	if err := sig.Sign(hh, priv, cfg); err != nil {
		return nil, fmt.Errorf("envelope: signing statement with key %s: %w", signer.Fingerprint(), err)
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, openpgp.SignatureType, nil)
	if err != nil {
		return nil, err
	}
	if err := sig.Serialize(w); err != nil {
		return nil, fmt.Errorf("envelope: serializing signature: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// signatureHash picks the hash for a signature by pub: SHA-256, or a
// longer one where the key's curve asks for it (as RFC 9580 and GnuPG do).
func signatureHash(pub *packet.PublicKey) crypto.Hash {
	switch pub.PubKeyAlgo {
	case packet.PubKeyAlgoEd448:
		return crypto.SHA512
	case packet.PubKeyAlgoECDSA, packet.PubKeyAlgoEdDSA:
		if c, err := pub.Curve(); err == nil {
			switch c {
			case packet.CurveNistP384, packet.CurveBrainpoolP384:
				return crypto.SHA384
			case packet.CurveNistP521, packet.CurveBrainpoolP512, packet.Curve448:
				return crypto.SHA512
			}
		}
	}
	return crypto.SHA256
}

// Verify checks that signature is a valid detached OpenPGP signature over
// the exact bytes of statement, made by signer: its primary key or one of
// its signing subkeys. It never looks at any other key, so a signature by
// anybody else fails, whatever the signature claims.
//
// signature may be ASCII-armored or binary. It must hold exactly one
// signature packet and nothing else, of type 0x00 (binary document; text
// signatures are refused because they ignore line endings), hashed with
// SHA-256, SHA-384 or SHA-512 (SHA-1 and MD5 are refused), naming the
// signing key as its issuer, created no later than a few minutes from now,
// not expired, by a key that was neither expired nor revoked when the
// signature was made. statement must be a canonical statement (see
// ParseStatement): a signature over anything else is not a statement
// signature. Verify does not interpret the statement; parse it and check its
// fields against what you expect.
//
// Every failure wraps ErrBadSignature; a signature that cannot be decoded
// also wraps envelope.ErrMalformed, and a statement that is not canonical
// also wraps ErrStatement.
func Verify(statement, signature []byte, signer *envelope.Key) error {
	return verifyAt(statement, signature, signer, time.Now())
}

func verifyAt(statement, signature []byte, signer *envelope.Key, now time.Time) error {
	if signer == nil {
		return wrapf(ErrBadSignature, "no key to verify against")
	}
	if _, err := ParseStatement(statement); err != nil {
		return fmt.Errorf("%w: the signed text is not a canonical statement: %w", ErrBadSignature, err)
	}
	sig, err := readStatementSignature(signature)
	if err != nil {
		return err
	}
	if sig.IssuerKeyId == nil && len(sig.IssuerFingerprint) == 0 {
		return wrapf(ErrBadSignature, "signature does not name its issuer key")
	}
	if sig.CreationTime.After(now.Add(maxClockSkew)) {
		return wrapf(ErrBadSignature, "signature was created at %s, in the future", sig.CreationTime.UTC().Format(time.RFC3339))
	}
	if sig.SigLifetimeSecs != nil && *sig.SigLifetimeSecs != 0 {
		expiry := sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second)
		if now.After(expiry) {
			return wrapf(ErrBadSignature, "signature expired at %s", expiry.UTC().Format(time.RFC3339))
		}
	}
	for _, n := range sig.Notations {
		if n.IsCritical {
			return wrapf(ErrBadSignature, "signature has a critical notation %q", n.Name)
		}
	}

	var candidates []*packet.PublicKey
	for _, pub := range signer.VerificationKeys() {
		if issuedBy(sig, pub) {
			candidates = append(candidates, pub)
		}
	}
	if len(candidates) == 0 {
		return wrapf(ErrBadSignature, "signature was made by key %s, which is not %s or one of its signing subkeys",
			issuerName(sig), signer.Fingerprint())
	}
	var lastErr error
	for _, pub := range candidates {
		if err := validAt(signer, pub, sig.CreationTime); err != nil {
			lastErr = err
			continue
		}
		if pub.Version != sig.Version || pub.PubKeyAlgo != sig.PubKeyAlgo {
			lastErr = wrapf(ErrBadSignature, "signature version %d algorithm %d does not match key %X (version %d, algorithm %d)",
				sig.Version, sig.PubKeyAlgo, pub.Fingerprint, pub.Version, pub.PubKeyAlgo)
			continue
		}
		h, err := sig.PrepareVerify()
		if err != nil {
			lastErr = wrapf(ErrBadSignature, "%v", err)
			continue
		}
		h.Write(statement)
		// The quick-check tag is not covered by the signature and go-crypto
		// only compares it for v5 and later; compare it here so that it
		// cannot be altered either.
		if tag := hashTag(sig, statement); tag != sig.HashTag {
			lastErr = wrapf(ErrBadSignature, "signature hash tag %x does not match the statement", sig.HashTag)
			continue
		}
		// VerifySignature appends the signature's hashed trailer (version,
		// type, algorithms, hashed subpackets) before comparing, as
		// go-crypto's own VerifyDetachedSignature does for binary signatures.
		if err := pub.VerifySignature(h, sig); err != nil {
			lastErr = wrapf(ErrBadSignature, "signature by %X does not match the statement: %v", pub.Fingerprint, err)
			continue
		}
		return nil
	}
	return lastErr
}

// BinarySignature returns the binary packet of an armored or binary
// signature, after the strict checks Verify makes of its form (one
// canonical signature packet). Log leaves carry signatures in this form,
// so that one signature has one leaf however it was armored.
func BinarySignature(data []byte) ([]byte, error) {
	_, bin, err := readSignatureBytes(data)
	return bin, err
}

// CheckSignatureForm checks what Verify checks of a signature whatever the
// key: that it decodes as one signature packet of type binary (0x00) with
// SHA-256, SHA-384 or SHA-512. A server can say so before it looks up the
// signer, and so name the common mistakes (a text-mode signature) without
// telling which keys are registered.
func CheckSignatureForm(signature []byte) error {
	_, err := readStatementSignature(signature)
	return err
}

// readStatementSignature reads a signature and checks its type and hash.
func readStatementSignature(signature []byte) (*packet.Signature, error) {
	sig, err := readSignature(signature)
	if err != nil {
		return nil, err
	}
	if sig.SigType != packet.SigTypeBinary {
		if sig.SigType == packet.SigTypeText {
			return nil, wrapf(ErrBadSignature, "signature type text (0x01); statements are signed as binary (0x00): no --textmode, --clearsign or --as=text")
		}
		return nil, wrapf(ErrBadSignature, "signature type is 0x%02x, want 0x00 (binary document)", uint8(sig.SigType))
	}
	switch sig.Hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, wrapf(ErrBadSignature, "signature hash %s is not accepted (want SHA-256, SHA-384 or SHA-512)", hashName(sig.Hash))
	}
	return sig, nil
}

// readSignature decodes an armored or binary signature and returns its
// single signature packet.
func readSignature(data []byte) (*packet.Signature, error) {
	sig, _, err := readSignatureBytes(data)
	return sig, err
}

// readSignatureBytes is readSignature, also returning the packet's bytes.
func readSignatureBytes(data []byte) (*packet.Signature, []byte, error) {
	if len(data) > maxSignatureSize {
		return nil, nil, malformedSig("signature is %d bytes, more than %d", len(data), maxSignatureSize)
	}
	if len(data) == 0 {
		return nil, nil, malformedSig("empty signature")
	}
	bin := data
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		if !bytes.HasPrefix(trimmed, []byte(sigArmorBegin)) {
			line, _, _ := bytes.Cut(trimmed, []byte("\n"))
			return nil, nil, malformedSig("armor block %q is not a signature", strings.TrimSpace(string(line)))
		}
		end := bytes.Index(trimmed, []byte(sigArmorEnd))
		if end < 0 {
			return nil, nil, malformedSig("armored signature has no end line")
		}
		end += len(sigArmorEnd)
		if len(bytes.TrimSpace(trimmed[end:])) != 0 {
			return nil, nil, malformedSig("data after the armored signature")
		}
		block, err := armor.Decode(bytes.NewReader(append(trimmed[:end:end], '\n')))
		if err != nil {
			return nil, nil, malformedSig("armor: %v", err)
		}
		if block.Type != openpgp.SignatureType {
			return nil, nil, malformedSig("armor block is %q, not a signature", block.Type)
		}
		bin, err = io.ReadAll(io.LimitReader(block.Body, maxSignatureSize))
		if err != nil {
			return nil, nil, malformedSig("armor: %v", err)
		}
		if len(bin) == 0 {
			return nil, nil, malformedSig("empty armored signature")
		}
	}

	hdr, body, err := packetBounds(bin)
	if err != nil {
		return nil, nil, err
	}
	if hdr+body < len(bin) {
		return nil, nil, malformedSig("%d bytes after the signature packet (only one signature packet is allowed)", len(bin)-hdr-body)
	}
	p, err := packet.Read(bytes.NewReader(bin))
	if err != nil {
		return nil, nil, malformedSig("signature packet: %v", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, nil, malformedSig("packet is %T, not a signature", p)
	}
	if err := checkUnhashed(bin[hdr : hdr+body]); err != nil {
		return nil, nil, err
	}
	if err := checkMPIs(sig); err != nil {
		return nil, nil, err
	}
	// go-crypto skips bytes left over at the end of a packet body; refuse
	// them by re-encoding the parsed packet and comparing, so that the
	// accepted encoding carries nothing beyond the signature itself.
	var re bytes.Buffer
	if err := sig.Serialize(&re); err != nil {
		return nil, nil, malformedSig("re-encoding signature: %v", err)
	}
	rhdr, _, err := packetBounds(re.Bytes())
	if err != nil || !bytes.Equal(re.Bytes()[rhdr:], bin[hdr:]) {
		return nil, nil, malformedSig("signature packet has extra or non-canonical bytes")
	}
	return sig, bin, nil
}

// hashTag returns the first two bytes of the digest sig covers over msg.
func hashTag(sig *packet.Signature, msg []byte) [2]byte {
	var tag [2]byte
	h, err := sig.PrepareVerify()
	if err != nil {
		return tag
	}
	h.Write(msg)
	h.Write(sig.HashSuffix)
	copy(tag[:], h.Sum(nil))
	return tag
}

// checkUnhashed refuses unhashed subpackets other than issuer hints (key
// id, fingerprint): nothing else may ride along unsigned. body is the
// signature packet body, v4 or v6.
func checkUnhashed(body []byte) error {
	lenSize := 2
	if len(body) > 0 && body[0] == 6 {
		lenSize = 4
	}
	field := func(b []byte) (int, bool) {
		if len(b) < lenSize {
			return 0, false
		}
		n := 0
		for _, c := range b[:lenSize] {
			n = n<<8 | int(c)
		}
		return n, n <= len(b)-lenSize
	}
	if len(body) < 4 {
		return malformedSig("signature packet truncated")
	}
	hashedLen, ok := field(body[4:])
	if !ok {
		return malformedSig("signature hashed area truncated")
	}
	rest := body[4+lenSize+hashedLen:]
	unhashedLen, ok := field(rest)
	if !ok {
		return malformedSig("signature unhashed area truncated")
	}
	sub := rest[lenSize : lenSize+unhashedLen]
	for len(sub) > 0 {
		var n, l int
		switch c := int(sub[0]); {
		case c < 192:
			n, l = c, 1
		case c < 255 && len(sub) >= 2:
			n, l = (c-192)<<8+int(sub[1])+192, 2
		case c == 255 && len(sub) >= 5:
			n, l = int(sub[1])<<24|int(sub[2])<<16|int(sub[3])<<8|int(sub[4]), 5
		default:
			return malformedSig("unhashed subpacket truncated")
		}
		if n < 1 || n > len(sub)-l {
			return malformedSig("unhashed subpacket truncated")
		}
		switch typ := sub[l] & 0x7f; typ {
		case 16, 33: // issuer key id, issuer fingerprint
		default:
			return wrapf(ErrBadSignature, "signature carries an unsigned subpacket of type %d", typ)
		}
		sub = sub[l+n:]
	}
	return nil
}

// checkMPIs refuses integers encoded with a bit count that is not their
// true length (go-crypto reads them either way), so the encoding of an
// accepted signature cannot be altered.
func checkMPIs(sig *packet.Signature) error {
	for _, f := range []encodingField{sig.RSASignature, sig.DSASigR, sig.DSASigS, sig.ECDSASigR, sig.ECDSASigS, sig.EdDSASigR, sig.EdDSASigS} {
		if f == nil {
			continue
		}
		b := f.Bytes()
		want := 0
		if len(b) > 0 {
			want = 8*(len(b)-1) + bits.Len8(b[0])
		}
		if int(f.BitLength()) != want || want == 0 {
			return malformedSig("signature integer has bit count %d, true length %d", f.BitLength(), want)
		}
	}
	return nil
}

// encodingField is the part of go-crypto's internal encoding.Field that
// checkMPIs needs.
type encodingField interface {
	Bytes() []byte
	BitLength() uint16
}

// packetBounds returns the header and body lengths of the signature packet
// at the start of b, accepting old- and new-format headers with definite
// lengths. It checks the packet is a signature and is complete.
func packetBounds(b []byte) (hdr, body int, err error) {
	if len(b) < 2 || b[0]&0x80 == 0 {
		return 0, 0, malformedSig("not an OpenPGP packet")
	}
	var tag byte
	var n uint64
	if b[0]&0x40 != 0 { // new format
		tag = b[0] & 0x3f
		switch l := b[1]; {
		case l < 192:
			hdr, n = 2, uint64(l)
		case l < 224:
			if len(b) < 3 {
				return 0, 0, malformedSig("truncated packet header")
			}
			hdr, n = 3, (uint64(l)-192)<<8+uint64(b[2])+192
		case l == 255:
			if len(b) < 6 {
				return 0, 0, malformedSig("truncated packet header")
			}
			hdr, n = 6, uint64(b[2])<<24|uint64(b[3])<<16|uint64(b[4])<<8|uint64(b[5])
		default:
			return 0, 0, malformedSig("signature packet with a partial body length")
		}
	} else { // old format
		tag = (b[0] >> 2) & 0x0f
		switch b[0] & 3 {
		case 0:
			hdr, n = 2, uint64(b[1])
		case 1:
			if len(b) < 3 {
				return 0, 0, malformedSig("truncated packet header")
			}
			hdr, n = 3, uint64(b[1])<<8|uint64(b[2])
		case 2:
			if len(b) < 5 {
				return 0, 0, malformedSig("truncated packet header")
			}
			hdr, n = 5, uint64(b[1])<<24|uint64(b[2])<<16|uint64(b[3])<<8|uint64(b[4])
		default:
			return 0, 0, malformedSig("signature packet with an indeterminate length")
		}
	}
	if tag != 2 {
		return 0, 0, malformedSig("packet has tag %d, not a signature (tag 2)", tag)
	}
	if n > uint64(len(b)-hdr) {
		return 0, 0, malformedSig("signature packet truncated: %d of %d body bytes", len(b)-hdr, n)
	}
	return hdr, int(n), nil
}

// issuedBy reports whether sig names pub as its issuer. Every issuer
// subpacket present must match: key id and fingerprint (with version).
func issuedBy(sig *packet.Signature, pub *packet.PublicKey) bool {
	if sig.IssuerKeyId != nil && *sig.IssuerKeyId != pub.KeyId {
		return false
	}
	if len(sig.IssuerFingerprint) != 0 {
		if int(sig.IssuerKeyVersion) != pub.Version || !bytes.Equal(sig.IssuerFingerprint, pub.Fingerprint) {
			return false
		}
	}
	return sig.IssuerKeyId != nil || len(sig.IssuerFingerprint) != 0
}

func issuerName(sig *packet.Signature) string {
	if len(sig.IssuerFingerprint) != 0 {
		return strings.ToUpper(hex.EncodeToString(sig.IssuerFingerprint))
	}
	return fmt.Sprintf("with key id %016X", *sig.IssuerKeyId)
}

// validAt checks that pub, one of k's keys, could make signatures at time
// t: the primary key was valid (not expired, not revoked, allowed to sign)
// and, for a subkey, the subkey was too. A revocation for key compromise
// counts at any time, as go-crypto applies it.
func validAt(k *envelope.Key, pub *packet.PublicKey, t time.Time) error {
	e := k.Entity()
	fp := k.Fingerprint()
	self, ident := e.PrimarySelfSignature()
	if self == nil {
		return wrapf(ErrBadSignature, "key %s has no valid self-signature", fp)
	}
	if e.Revoked(t) || (ident != nil && ident.Revoked(t)) {
		return wrapf(ErrBadSignature, "key %s was revoked when the signature was made", fp)
	}
	if e.PrimaryKey.KeyExpired(self, t) {
		return wrapf(ErrBadSignature, "key %s was expired or not yet valid when the signature was made", fp)
	}
	if pub == e.PrimaryKey {
		if self.FlagsValid && !self.FlagSign {
			return wrapf(ErrBadSignature, "primary key %s may not make signatures", fp)
		}
		return nil
	}
	for _, s := range e.Subkeys {
		if s.PublicKey != pub {
			continue
		}
		if s.Sig == nil || !s.Sig.FlagsValid || !s.Sig.FlagSign {
			return wrapf(ErrBadSignature, "subkey %X may not make signatures", pub.Fingerprint)
		}
		if s.Revoked(t) {
			return wrapf(ErrBadSignature, "subkey %X was revoked when the signature was made", pub.Fingerprint)
		}
		if s.PublicKey.KeyExpired(s.Sig, t) {
			return wrapf(ErrBadSignature, "subkey %X was expired or not yet valid when the signature was made", pub.Fingerprint)
		}
		return nil
	}
	return wrapf(ErrBadSignature, "key %X is not part of %s", pub.Fingerprint, fp)
}

func hashName(h crypto.Hash) string {
	if h == 0 {
		return "(none)"
	}
	return h.String()
}
