package envelope

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
)

// MinRSABits is the smallest RSA modulus accepted for any key.
const MinRSABits = 2048

// maxKeySize bounds a serialized key we are willing to parse.
const maxKeySize = 1 << 20

// A Key is one OpenPGP key (certificate): a signing primary key with an
// encryption subkey, optionally with its private parts. The primary key's
// fingerprint is the key's identity everywhere in Keyholder.
type Key struct {
	entity *openpgp.Entity
}

// GenerateKey makes a new device or party key: a v4 EdDSA (Ed25519) primary
// key for signatures and an ECDH Cv25519 subkey for encryption, preferring
// AES-256 and SHA-256, and advertising SEIPDv2 (AES-256-GCM) support for the
// modern profile. GnuPG 2.2, Sequoia and OpenPGP.js all read such keys.
// name becomes the key's user id; it may be empty.
func GenerateKey(name string) (*Key, error) {
	e, err := openpgp.NewEntity(name, "", "", keyGenConfig())
	if err != nil {
		return nil, fmt.Errorf("envelope: generating key: %w", err)
	}
	return &Key{entity: e}, nil
}

func keyGenConfig() *packet.Config {
	return &packet.Config{
		Algorithm:     packet.PubKeyAlgoEdDSA,
		Curve:         packet.Curve25519,
		DefaultHash:   crypto.SHA256,
		DefaultCipher: packet.CipherAES256,
		AEADConfig:    &packet.AEADConfig{DefaultMode: packet.AEADModeGCM},
		// No compression preference beyond "none": records are never compressed.
		DefaultCompressionAlgo: packet.CompressionNone,
	}
}

// ParseKey reads exactly one OpenPGP key, armored or binary, public or
// secret. It refuses keys that cannot both sign and encrypt with an accepted
// algorithm (EdDSA, ECDSA and ECDH on Curve25519 or NIST curves, X25519,
// Ed25519, RSA of at least MinRSABits bits).
func ParseKey(data []byte) (*Key, error) {
	if len(data) > maxKeySize {
		return nil, wrapf(ErrMalformed, "key is %d bytes, more than the %d allowed", len(data), maxKeySize)
	}
	bin := data
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN PGP")) {
		// armor.Decode reads the first block only: a second armored key
		// after it would be silently ignored, so refuse it here.
		if n := bytes.Count(data, []byte("-----BEGIN PGP")); n != 1 {
			return nil, wrapf(ErrMalformed, "expected exactly one armored key, found %d armor blocks", n)
		}
		block, err := armor.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, wrapf(ErrMalformed, "key armor: %v", err)
		}
		if block.Type != openpgp.PublicKeyType && block.Type != openpgp.PrivateKeyType {
			return nil, wrapf(ErrMalformed, "armor block is %q, not a key", block.Type)
		}
		if bin, err = io.ReadAll(io.LimitReader(block.Body, maxKeySize)); err != nil {
			return nil, wrapf(ErrMalformed, "key armor: %v", err)
		}
		defer clear(bin)
	}
	// ReadKeyRing skips keys it cannot read, so count the primary key
	// packets first: an input holding an unreadable key and a good one
	// must not pass as the good one alone.
	if n, err := countPrimaryKeys(bin); err != nil {
		return nil, err
	} else if n != 1 {
		return nil, wrapf(ErrMalformed, "expected exactly one key, found %d", n)
	}
	list, err := openpgp.ReadKeyRing(bytes.NewReader(bin))
	if err != nil {
		return nil, wrapf(ErrMalformed, "reading key: %v", err)
	}
	if len(list) != 1 {
		return nil, wrapf(ErrMalformed, "expected exactly one key, found %d", len(list))
	}
	k := &Key{entity: list[0]}
	if err := k.check(); err != nil {
		return nil, err
	}
	return k, nil
}

// countPrimaryKeys counts the primary key packets (public or secret) in a
// binary key, whether or not go-crypto can parse them.
func countPrimaryKeys(bin []byte) (int, error) {
	r := packet.NewOpaqueReader(bytes.NewReader(bin))
	n := 0
	for {
		p, err := r.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, wrapf(ErrMalformed, "reading key: %v", err)
		}
		if p.Tag == 5 || p.Tag == 6 { // secret key, public key
			n++
		}
	}
}

// check enforces the algorithm policy and that the key can sign and encrypt.
func (k *Key) check() error {
	if err := checkAlgorithm(k.entity.PrimaryKey, true); err != nil {
		return err
	}
	now := time.Now()
	sig, ok := k.entity.SigningKey(now)
	if !ok {
		return wrapf(ErrUnsupported, "key %s has no valid signing key", k.Fingerprint())
	}
	if err := checkAlgorithm(sig.PublicKey, true); err != nil {
		return err
	}
	enc, ok := k.entity.EncryptionKey(now)
	if !ok {
		return wrapf(ErrUnsupported, "key %s has no valid encryption key", k.Fingerprint())
	}
	return checkAlgorithm(enc.PublicKey, false)
}

func checkAlgorithm(pk *packet.PublicKey, signing bool) error {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		bits, err := pk.BitLength()
		if err != nil {
			return wrapf(ErrMalformed, "RSA key %X: %v", pk.Fingerprint, err)
		}
		if int(bits) < MinRSABits {
			return wrapf(ErrUnsupported, "RSA key %X has %d bits, fewer than %d", pk.Fingerprint, bits, MinRSABits)
		}
		return nil
	case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448:
		if signing {
			return nil
		}
	case packet.PubKeyAlgoECDSA:
		if signing {
			return checkCurve(pk)
		}
	case packet.PubKeyAlgoECDH:
		if !signing {
			return checkCurve(pk)
		}
	case packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448:
		if !signing {
			return nil
		}
	}
	use := "encryption"
	if signing {
		use = "signing"
	}
	return wrapf(ErrUnsupported, "public key algorithm %d is not accepted for %s", pk.PubKeyAlgo, use)
}

func checkCurve(pk *packet.PublicKey) error {
	c, err := pk.Curve()
	if err != nil {
		return wrapf(ErrUnsupported, "key %X: %v", pk.Fingerprint, err)
	}
	switch c {
	case packet.Curve25519, packet.CurveNistP256, packet.CurveNistP384, packet.CurveNistP521:
		return nil
	}
	return wrapf(ErrUnsupported, "key %X uses curve %s, which is not accepted", pk.Fingerprint, c)
}

// Fingerprint returns the primary key's fingerprint as upper-case hex, the
// way GnuPG prints it (40 digits for v4 keys, 64 for v6 keys).
func (k *Key) Fingerprint() string {
	return strings.ToUpper(hex.EncodeToString(k.entity.PrimaryKey.Fingerprint))
}

// Name returns the key's primary user id, or "" if it has none.
func (k *Key) Name() string {
	if id := k.entity.PrimaryIdentity(); id != nil {
		return id.Name
	}
	return ""
}

// HasPrivate reports whether the key carries private key material (locked
// or not).
func (k *Key) HasPrivate() bool {
	return k.entity.PrivateKey != nil
}

// Locked reports whether the private key is still protected by its
// passphrase.
func (k *Key) Locked() bool {
	if k.entity.PrivateKey != nil && k.entity.PrivateKey.Encrypted {
		return true
	}
	for _, s := range k.entity.Subkeys {
		if s.PrivateKey != nil && s.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// Unlock decrypts the private key with its passphrase.
func (k *Key) Unlock(passphrase []byte) error {
	if !k.HasPrivate() {
		return ErrNoPrivateKey
	}
	if err := k.entity.DecryptPrivateKeys(passphrase); err != nil {
		return fmt.Errorf("envelope: unlocking key %s: wrong passphrase or damaged key: %w", k.Fingerprint(), ErrKeyLocked)
	}
	return nil
}

// Public returns the key without its private parts.
func (k *Key) Public() *Key {
	var buf bytes.Buffer
	if err := k.entity.Serialize(&buf); err != nil {
		// Serializing a parsed or generated public key cannot fail short of
		// a bug; a panic here would leak nothing secret.
		panic("envelope: serializing public key: " + err.Error())
	}
	list, err := openpgp.ReadKeyRing(&buf)
	if err != nil || len(list) != 1 {
		panic(fmt.Sprintf("envelope: re-reading public key: %v", err))
	}
	return &Key{entity: list[0]}
}

// Bytes returns the binary public key (transferable public key).
func (k *Key) Bytes() []byte {
	var buf bytes.Buffer
	if err := k.entity.Serialize(&buf); err != nil {
		panic("envelope: serializing public key: " + err.Error())
	}
	return buf.Bytes()
}

// Armor returns the ASCII-armored public key, as `gpg --armor --export` writes it.
func (k *Key) Armor() []byte {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err == nil {
		_, err = w.Write(k.Bytes())
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic("envelope: armoring public key: " + err.Error())
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// S2K selects how MarshalPrivate protects a private key with a passphrase.
type S2K int

const (
	// S2KArgon2 uses Argon2 with AEAD key protection (RFC 9580). It is the
	// default for keys that stay with Keyholder's own programs.
	S2KArgon2 S2K = iota
	// S2KIterated uses iterated and salted SHA-256 with CFB protection,
	// the only form GnuPG 2.2 can import.
	S2KIterated
)

// MarshalPrivate returns the ASCII-armored secret key, protected with
// passphrase. The key must be unlocked. An empty passphrase is refused: a
// private key never leaves this package unprotected.
func (k *Key) MarshalPrivate(passphrase []byte, mode S2K) ([]byte, error) {
	if !k.HasPrivate() {
		return nil, ErrNoPrivateKey
	}
	if k.Locked() {
		return nil, ErrKeyLocked
	}
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("envelope: refusing to export private key %s without a passphrase", k.Fingerprint())
	}
	// Work on a copy: EncryptPrivateKeys encrypts in place.
	var plain bytes.Buffer
	if err := k.entity.SerializePrivateWithoutSigning(&plain, nil); err != nil {
		return nil, fmt.Errorf("envelope: serializing private key: %w", err)
	}
	raw := plain.Bytes()
	list, err := openpgp.ReadKeyRing(bytes.NewReader(raw))
	clear(raw)
	if err != nil || len(list) != 1 {
		return nil, fmt.Errorf("envelope: copying private key: %v", err)
	}
	cp := list[0]
	cfg := &packet.Config{}
	switch mode {
	case S2KArgon2:
		cfg.S2KConfig = &s2k.Config{S2KMode: s2k.Argon2S2K}
		cfg.AEADConfig = &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}
	case S2KIterated:
		cfg.S2KConfig = &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 65011712}
	default:
		return nil, fmt.Errorf("envelope: unknown S2K mode %d", mode)
	}
	cfg.DefaultCipher = packet.CipherAES256
	if err := cp.EncryptPrivateKeys(passphrase, cfg); err != nil {
		return nil, fmt.Errorf("envelope: protecting private key: %w", err)
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := cp.SerializePrivateWithoutSigning(w, nil); err != nil {
		return nil, fmt.Errorf("envelope: serializing private key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// encryptionKey returns the subkey new key packets are addressed to.
func (k *Key) encryptionKey() (*packet.PublicKey, error) {
	enc, ok := k.entity.EncryptionKey(time.Now())
	if !ok {
		return nil, wrapf(ErrUnsupported, "key %s has no valid encryption key", k.Fingerprint())
	}
	return enc.PublicKey, nil
}

// The three methods below are for code that makes or checks OpenPGP
// signatures with a Key at the packet level: package statement signs and
// verifies statements with them.

// Entity returns the go-crypto entity behind k. It is k's own, not a copy:
// read it, do not modify it.
func (k *Key) Entity() *openpgp.Entity { return k.entity }

// SigningKey returns the private key that signs for k now: the primary key
// or a signing subkey. It fails with ErrNoPrivateKey if k holds no usable
// private signing key and with ErrKeyLocked if that key is still locked.
func (k *Key) SigningKey() (*packet.PrivateKey, error) {
	if !k.HasPrivate() {
		return nil, ErrNoPrivateKey
	}
	s, ok := k.entity.SigningKey(time.Now())
	if !ok || s.PrivateKey == nil {
		return nil, wrapf(ErrNoPrivateKey, "key %s has no usable signing key", k.Fingerprint())
	}
	if s.PrivateKey.Encrypted {
		return nil, ErrKeyLocked
	}
	return s.PrivateKey, nil
}

// VerificationKeys returns every public key of k that may have made a
// signature: the primary key and the signing subkeys that are not revoked
// and use an accepted algorithm. Whether a key was valid when it made a
// given signature is the verifier's to check.
func (k *Key) VerificationKeys() []*packet.PublicKey {
	keys := []*packet.PublicKey{k.entity.PrimaryKey}
	for _, s := range k.entity.Subkeys {
		if s.Sig != nil && s.Sig.FlagsValid && s.Sig.FlagSign && !s.Revoked(time.Now()) &&
			checkAlgorithm(s.PublicKey, true) == nil {
			keys = append(keys, s.PublicKey)
		}
	}
	return keys
}

// primaryEncrypts reports whether the primary key itself may encrypt. Keys
// from other tools (an RSA key made with "sign,encrypt" usage and no
// subkey) can have it; [openpgp.Entity.EncryptionKey] then seals to the
// primary key, so decryption must consider it too.
func (k *Key) primaryEncrypts() bool {
	sig, _ := k.entity.PrimarySelfSignature()
	return sig != nil && sig.FlagsValid && (sig.FlagEncryptCommunications || sig.FlagEncryptStorage) &&
		k.entity.PrimaryKey.PubKeyAlgo.CanEncrypt()
}

// decryptionKeys returns k's private keys that may decrypt key packet kp,
// matched by key id (v3) or fingerprint (v6).
func (k *Key) decryptionKeys(kp *KeyPacket) []*packet.PrivateKey {
	var out []*packet.PrivateKey
	consider := func(priv *packet.PrivateKey) {
		if priv == nil || priv.Dummy() {
			return
		}
		if kp.matches(&priv.PublicKey) {
			out = append(out, priv)
		}
	}
	for _, s := range k.entity.Subkeys {
		if s.Sig != nil && s.Sig.FlagsValid && !(s.Sig.FlagEncryptCommunications || s.Sig.FlagEncryptStorage) {
			continue
		}
		consider(s.PrivateKey)
	}
	if k.primaryEncrypts() {
		consider(k.entity.PrivateKey)
	}
	return out
}

// addressedBy reports whether key packet kp is addressed to one of k's
// encryption keys.
func (k *Key) addressedBy(kp *KeyPacket) bool {
	for _, s := range k.entity.Subkeys {
		if s.Sig != nil && s.Sig.FlagsValid && !(s.Sig.FlagEncryptCommunications || s.Sig.FlagEncryptStorage) {
			continue
		}
		if kp.matches(s.PublicKey) {
			return true
		}
	}
	return k.primaryEncrypts() && kp.matches(k.entity.PrimaryKey)
}

// CanReceive reports, as a nil error, whether the owner of k can open a
// record of profile p once a key packet for it is addressed to k: the one
// question a rewrap to k must ask first, because a rewrap that succeeds is
// no proof (a modern rewrap works for any key, and only the reader finds
// out that it cannot read SEIPDv2).
//
//   - compat (v3 key packets, SEIPDv1): k's encryption key must be a v4
//     key; a v3 key packet cannot be addressed to a v6 key.
//   - modern (v6 key packets, SEIPDv2): k must advertise SEIPDv2 in the
//     features of its primary self-signature (a v6 key's direct-key
//     signature), as RFC 9580 §5.2.3.32 has implementations say what they
//     read. GnuPG 2.2/2.4 keys do not; Keyholder's own keys do.
//
// A failure wraps ErrProfileMismatch and names the key and the profile; a
// key without a valid encryption key is ErrUnsupported, as everywhere.
func (k *Key) CanReceive(p Profile) error {
	if _, err := ParseProfile(string(p)); err != nil {
		return err
	}
	pub, err := k.encryptionKey()
	if err != nil {
		return err
	}
	if p == Compat {
		return compatRecipient(k, pub)
	}
	if !k.advertisesSEIPDv2() {
		return wrapf(ErrProfileMismatch, "key %s does not advertise SEIPDv2 support (features subpacket); the modern profile's records are SEIPDv2, which its owner's software may not read", k.Fingerprint())
	}
	return nil
}

// advertisesSEIPDv2 reports whether k's primary self-signature (for a v6
// key, its direct-key signature) lists SEIPDv2 among its features.
func (k *Key) advertisesSEIPDv2() bool {
	sig, _ := k.entity.PrimarySelfSignature()
	return sig != nil && sig.SEIPDv2
}
