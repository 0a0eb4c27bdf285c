package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// An Identity is the private key of a device or a party, unlocked, ready to
// sign statements and authentication challenges (through pkg/envelope).
type Identity struct {
	// Key is the unlocked key, for statement.Sign, Open, Rewrap and CanOpen.
	Key *envelope.Key
	// ent is the unlocked go-crypto entity, for MarshalUnprotected.
	ent *openpgp.Entity
}

// ErrPassphrase reports a missing or wrong passphrase.
var ErrPassphrase = errors.New("wrong or missing passphrase")

// ParseIdentity reads an armored or binary OpenPGP secret key (as written
// by [Identity.Marshal], or by `gpg --export-secret-keys`) and unlocks it
// with passphrase when it is protected.
func ParseIdentity(data, passphrase []byte) (*Identity, error) {
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN PGP")) {
		block, err := armor.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading key: %w", err)
		}
		if block.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("reading key: armor block is %q, not a private key", block.Type)
		}
		r = block.Body
	}
	list, err := openpgp.ReadKeyRing(r)
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("reading key: expected one key, found %d", len(list))
	}
	ent := list[0]
	if ent.PrivateKey == nil {
		return nil, fmt.Errorf("reading key: %w", envelope.ErrNoPrivateKey)
	}
	if locked(ent) {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("key %X is protected: %w", ent.PrimaryKey.Fingerprint, ErrPassphrase)
		}
		if err := ent.DecryptPrivateKeys(passphrase); err != nil {
			return nil, fmt.Errorf("unlocking key %X: %w", ent.PrimaryKey.Fingerprint, ErrPassphrase)
		}
	}
	var plain bytes.Buffer
	if err := ent.SerializePrivateWithoutSigning(&plain, nil); err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	raw := plain.Bytes()
	k, err := envelope.ParseKey(raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	if k.Locked() {
		return nil, fmt.Errorf("key %s: %w", k.Fingerprint(), envelope.ErrKeyLocked)
	}
	return &Identity{Key: k, ent: ent}, nil
}

func locked(e *openpgp.Entity) bool {
	if e.PrivateKey != nil && e.PrivateKey.Encrypted {
		return true
	}
	for _, s := range e.Subkeys {
		if s.PrivateKey != nil && s.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// GenerateIdentity makes a new key with envelope.GenerateKey and returns
// it with its armored private key protected by passphrase (mode selects the
// S2K; envelope.S2KIterated is what GnuPG 2.2 imports).
func GenerateIdentity(name string, passphrase []byte, mode envelope.S2K) (*Identity, []byte, error) {
	k, err := envelope.GenerateKey(name)
	if err != nil {
		return nil, nil, err
	}
	armored, err := k.MarshalPrivate(passphrase, mode)
	if err != nil {
		return nil, nil, err
	}
	id, err := ParseIdentity(armored, passphrase)
	if err != nil {
		return nil, nil, err
	}
	return id, armored, nil
}

// MarshalUnprotected returns the armored private key without a passphrase.
// Store it only where file permissions protect it (a server's key store);
// prefer [envelope.Key.MarshalPrivate].
func (id *Identity) MarshalUnprotected() ([]byte, error) {
	if id.ent == nil {
		return nil, errors.New("client: this identity was made from an envelope.Key; use Key.MarshalPrivate")
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := id.ent.SerializePrivateWithoutSigning(w, nil); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Fingerprint is the key's fingerprint, as the server names it.
func (id *Identity) Fingerprint() string { return id.Key.Fingerprint() }

// SignChallenge returns an armored detached signature over an
// authentication challenge text (a marshaled statement.Challenge, the
// canonical keyholder-auth-v1 statement), made with statement.Sign.
func (id *Identity) SignChallenge(text []byte) ([]byte, error) {
	sig, err := statement.Sign(text, id.Key)
	if err != nil {
		return nil, fmt.Errorf("signing challenge: %w", err)
	}
	return sig, nil
}

// IdentityFromKey wraps an unlocked private key (from envelope.GenerateKey,
// or envelope.ParseKey and Unlock) as an Identity. MarshalUnprotected is
// not available on it.
func IdentityFromKey(k *envelope.Key) (*Identity, error) {
	if !k.HasPrivate() {
		return nil, envelope.ErrNoPrivateKey
	}
	if k.Locked() {
		return nil, envelope.ErrKeyLocked
	}
	return &Identity{Key: k}, nil
}
