package envelope

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Rewrap recovers the session key from kp, a key packet addressed to
// identity, and returns a new key packet holding the same session key for
// recipient. It never touches the encrypted data packet: with it, a device
// opens one record for one party without seeing the record.
//
// The new packet's version follows the record's data packet (v3 for
// [Compat], v6 for [Modern]), never the recipient key's version; a kp whose
// version does not match profile is refused with ErrProfileMismatch. The
// session key is zeroed before Rewrap returns.
func Rewrap(kp *KeyPacket, profile Profile, identity, recipient *Key) ([]byte, error) {
	pub, err := recipientKey(recipient, profile)
	if err != nil {
		return nil, err
	}
	ek, err := unwrap(kp, profile, identity)
	if err != nil {
		return nil, err
	}
	defer clear(ek.Key)
	var buf bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&buf, pub, ek.CipherFunc, profile == Modern, ek.Key, nil); err != nil {
		return nil, fmt.Errorf("envelope: rewrap to %s: %w", recipient.Fingerprint(), err)
	}
	return buf.Bytes(), nil
}

// CanOpen reports, as a nil error, whether identity can recover the session
// key in kp for a record of the given profile. A device calls it before
// approving a submission, to know the record is really addressed to it.
func CanOpen(kp *KeyPacket, profile Profile, identity *Key) error {
	ek, err := unwrap(kp, profile, identity)
	if err != nil {
		return err
	}
	clear(ek.Key)
	return nil
}

// sessionKeyIDLabel is the message of the session key id's HMAC.
const sessionKeyIDLabel = "keyholder-session-key-id-v1"

// SessionKeyID recovers the session key from kp, a key packet addressed to
// identity, and returns its one-way id: HMAC-SHA256 keyed with the session
// key over the fixed label "keyholder-session-key-id-v1". The id reveals
// nothing of the key, but two key packets that hold the same session key
// have the same id, whoever sealed them and to whichever key: a device
// that remembers the ids of the records it approved can refuse a record
// whose key packet was copied from another one (and so never re-wrap one
// record's session key in another record's name). It also answers what
// CanOpen answers.
func SessionKeyID(kp *KeyPacket, profile Profile, identity *Key) ([32]byte, error) {
	ek, err := unwrap(kp, profile, identity)
	if err != nil {
		return [32]byte{}, err
	}
	defer clear(ek.Key)
	return sessionKeyIDOf(ek.Key), nil
}

func sessionKeyIDOf(sessionKey []byte) [32]byte {
	var id [32]byte
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte(sessionKeyIDLabel))
	m.Sum(id[:0])
	return id
}

// unwrap decrypts kp with identity. The caller must clear the returned key.
func unwrap(kp *KeyPacket, profile Profile, identity *Key) (*packet.EncryptedKey, error) {
	if _, err := ParseProfile(string(profile)); err != nil {
		return nil, err
	}
	if want := profile.keyPacketVersion(); kp.Version != want {
		return nil, wrapf(ErrProfileMismatch, "a %s record needs v%d key packets, this one is v%d", profile, want, kp.Version)
	}
	if !identity.HasPrivate() {
		return nil, ErrNoPrivateKey
	}
	privs := identity.decryptionKeys(kp)
	if len(privs) == 0 {
		return nil, wrapf(ErrNoMatchingKey, "key packet for key id %016X, key %s", kp.KeyID, identity.Fingerprint())
	}
	for _, priv := range privs {
		if priv.Encrypted {
			return nil, ErrKeyLocked
		}
		ek, err := kp.parse()
		if err != nil {
			return nil, err
		}
		if err := ek.Decrypt(priv, nil); err != nil {
			continue
		}
		if err := checkSessionKey(ek, profile); err != nil {
			clear(ek.Key)
			return nil, err
		}
		return ek, nil
	}
	return nil, wrapf(ErrWrongKey, "key %s", identity.Fingerprint())
}

// checkSessionKey refuses session keys that do not fit the profile's
// cipher: a v3 packet names its cipher, and only AES is accepted.
func checkSessionKey(ek *packet.EncryptedKey, profile Profile) error {
	if profile == Modern {
		// v6 packets carry no cipher id; the SEIPDv2 header names it.
		switch len(ek.Key) {
		case 16, 24, 32:
			return nil
		}
		return wrapf(ErrMalformed, "session key of %d bytes", len(ek.Key))
	}
	switch ek.CipherFunc {
	case packet.CipherAES128, packet.CipherAES192, packet.CipherAES256:
		if len(ek.Key) == ek.CipherFunc.KeySize() {
			return nil
		}
	default:
		return wrapf(ErrUnsupported, "session key cipher %d (only AES is accepted)", ek.CipherFunc)
	}
	return wrapf(ErrMalformed, "session key of %d bytes for cipher %d", len(ek.Key), ek.CipherFunc)
}
