package envelope

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// serializeEntity returns e's secret key (or public key, if pub) in binary.
func serializeEntity(t testing.TB, e *openpgp.Entity, pub bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if pub {
		err = e.Serialize(&buf)
	} else {
		err = e.SerializePrivateWithoutSigning(&buf, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newEntity(t testing.TB, name string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Keys from other tools: RSA-3072, NIST P-256 and v4 Ed25519/X25519,
// generated once.
var foreignKeys = sync.OnceValues(func() (map[string]*openpgp.Entity, error) {
	m := map[string]*openpgp.Entity{}
	for name, cfg := range map[string]*packet.Config{
		"rsa3072": {Algorithm: packet.PubKeyAlgoRSA, RSABits: 3072, DefaultHash: crypto.SHA256},
		"p256":    {Algorithm: packet.PubKeyAlgoECDSA, Curve: packet.CurveNistP256, DefaultHash: crypto.SHA256},
		// RFC 9580 algorithms on a v4 key: Ed25519 (27) and X25519 (25).
		"ed25519v4": {Algorithm: packet.PubKeyAlgoEd25519, DefaultHash: crypto.SHA256},
	} {
		e, err := openpgp.NewEntity(name, "", "", cfg)
		if err != nil {
			return nil, err
		}
		m[name] = e
	}
	return m, nil
})

func TestGenerateKeyRoundTrip(t *testing.T) {
	k, err := GenerateKey("Alice's phone")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9A-F]{40}$`).MatchString(k.Fingerprint()) {
		t.Fatalf("fingerprint %q is not 40 upper-case hex digits", k.Fingerprint())
	}
	if k.Name() != "Alice's phone" || !k.HasPrivate() || k.Locked() {
		t.Fatalf("generated key: name %q, private %v, locked %v", k.Name(), k.HasPrivate(), k.Locked())
	}
	e := k.entity
	if e.PrimaryKey.Version != 4 || e.PrimaryKey.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
		t.Errorf("primary key: v%d algorithm %d, want v4 EdDSA", e.PrimaryKey.Version, e.PrimaryKey.PubKeyAlgo)
	}
	enc, _ := k.encryptionKey()
	if curve, _ := enc.Curve(); enc.PubKeyAlgo != packet.PubKeyAlgoECDH || curve != packet.Curve25519 {
		t.Errorf("encryption key: algorithm %d curve %s, want ECDH Cv25519", enc.PubKeyAlgo, curve)
	}

	for name, data := range map[string][]byte{"armored": k.Armor(), "binary": k.Bytes(), "Public().Bytes": k.Public().Bytes()} {
		p, err := ParseKey(data)
		if err != nil {
			t.Fatalf("%s: ParseKey: %v", name, err)
		}
		if p.Fingerprint() != k.Fingerprint() || p.Name() != k.Name() || p.HasPrivate() {
			t.Errorf("%s: parsed %s %q private=%v", name, p.Fingerprint(), p.Name(), p.HasPrivate())
		}
		// A record sealed to the parsed public key opens with the original.
		msg, _ := seal(t, Compat, []byte("to parsed"), p)
		if got, err := openAll(msg, k); err != nil || string(got) != "to parsed" {
			t.Errorf("%s: open: %v", name, err)
		}
	}
	if !bytes.HasPrefix(k.Armor(), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Errorf("Armor() starts %q", k.Armor()[:40])
	}
	if k.Public().HasPrivate() || !k.HasPrivate() {
		t.Error("Public() kept the private key, or stripped the original")
	}
	if err := k.Public().Unlock([]byte("x")); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("Unlock of a public key: %v, want ErrNoPrivateKey", err)
	}
	if err := k.Unlock([]byte("anything")); err != nil {
		t.Errorf("Unlock of an unlocked key: %v", err)
	}
}

func TestMarshalPrivate(t *testing.T) {
	k := namedKey("device")
	msg, _ := seal(t, Compat, []byte("for the device"), k)
	for _, c := range []struct {
		name string
		mode S2K
		// marker is the secret key packet's S2K usage, cipher and S2K
		// fields: AEAD (253) with AES-256 GCM and Argon2 (4), or CFB with
		// SHA-1 check (254), AES-256, iterated-salted (3) SHA-256 (8).
		marker []byte
	}{
		{"argon2", S2KArgon2, []byte{253, 9, 3, 4}},
		{"iterated", S2KIterated, []byte{254, 9, 3, 8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			armored, err := k.MarshalPrivate([]byte("correct horse"), c.mode)
			if err != nil {
				t.Fatal(err)
			}
			block, err := armor.Decode(bytes.NewReader(armored))
			if err != nil || block.Type != openpgp.PrivateKeyType {
				t.Fatalf("armor: %v", err)
			}
			bin, _ := io.ReadAll(block.Body)
			if n := bytes.Count(bin, c.marker); n != 2 {
				t.Errorf("S2K fields % x found %d times, want 2 (primary and subkey)", c.marker, n)
			}
			p, err := ParseKey(armored)
			if err != nil {
				t.Fatal(err)
			}
			if !p.HasPrivate() || !p.Locked() || p.Fingerprint() != k.Fingerprint() {
				t.Fatalf("parsed: private %v locked %v", p.HasPrivate(), p.Locked())
			}
			if _, err := openAll(msg, p); !errors.Is(err, ErrKeyLocked) {
				t.Errorf("open with a locked key: %v, want ErrKeyLocked", err)
			}
			if _, err := p.MarshalPrivate([]byte("x"), c.mode); !errors.Is(err, ErrKeyLocked) {
				t.Errorf("MarshalPrivate of a locked key: %v, want ErrKeyLocked", err)
			}
			if err := p.Unlock([]byte("wrong horse")); !errors.Is(err, ErrKeyLocked) {
				t.Errorf("Unlock with a wrong passphrase: %v, want ErrKeyLocked", err)
			}
			if !p.Locked() {
				t.Error("key unlocked by a wrong passphrase")
			}
			if err := p.Unlock([]byte("correct horse")); err != nil {
				t.Fatalf("Unlock: %v", err)
			}
			if p.Locked() {
				t.Error("still locked after Unlock")
			}
			if got, err := openAll(msg, p); err != nil || string(got) != "for the device" {
				t.Errorf("open with the unlocked key: %v", err)
			}
		})
	}
	// The original key is untouched by the export.
	if k.Locked() {
		t.Fatal("MarshalPrivate locked the original key")
	}
	if got, err := openAll(msg, k); err != nil || string(got) != "for the device" {
		t.Fatalf("original key after export: %v", err)
	}
	if _, err := k.MarshalPrivate(nil, S2KIterated); err == nil {
		t.Error("MarshalPrivate with an empty passphrase succeeded")
	}
	if _, err := k.MarshalPrivate([]byte{}, S2KArgon2); err == nil {
		t.Error("MarshalPrivate with an empty passphrase succeeded")
	}
	if _, err := k.Public().MarshalPrivate([]byte("x"), S2KArgon2); !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("MarshalPrivate of a public key: %v, want ErrNoPrivateKey", err)
	}
	if _, err := k.MarshalPrivate([]byte("x"), S2K(7)); err == nil {
		t.Error("MarshalPrivate with an unknown S2K mode succeeded")
	}
}

func TestParseKeyRefuses(t *testing.T) {
	k := namedKey("device")
	other := namedKey("party")

	rsa1024 := newEntity(t, "weak", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024})
	noEnc := newEntity(t, "signing only", keyGenConfig())
	noEnc.Subkeys = nil
	// Subkeys added an hour after the primary key: go-crypto picks the
	// newest subkey for each use.
	hourAgo := keyGenConfig()
	hourAgo.Time = func() time.Time { return time.Now().Add(-time.Hour) }
	weakSub := newEntity(t, "weak subkey", hourAgo)
	if err := weakSub.AddEncryptionSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024}); err != nil {
		t.Fatal(err)
	}
	weakSigner := newEntity(t, "weak signing subkey", hourAgo)
	if err := weakSigner.AddSigningSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024}); err != nil {
		t.Fatal(err)
	}
	// A public key packet of an algorithm go-crypto cannot read (99),
	// which ReadKeyRing would silently skip.
	unreadable := frameNew(6, concat([]byte{4, 0x60, 0, 0, 0, 99}, noise(40)), 0)

	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"garbage", []byte("not a key"), ErrMalformed},
		{"random binary", noise(200), ErrMalformed},
		{"too large", make([]byte, maxKeySize+1), ErrMalformed},
		{"RSA-1024", serializeEntity(t, rsa1024, true), ErrUnsupported},
		{"RSA-1024 secret", serializeEntity(t, rsa1024, false), ErrUnsupported},
		{"no encryption subkey", serializeEntity(t, noEnc, true), ErrUnsupported},
		{"RSA-1024 encryption subkey", serializeEntity(t, weakSub, true), ErrUnsupported},
		{"RSA-1024 signing subkey", serializeEntity(t, weakSigner, true), ErrUnsupported},
		{"two keys, binary", concat(k.Bytes(), other.Bytes()), ErrMalformed},
		{"two keys in one armor block", armorBytes(t, openpgp.PublicKeyType, concat(k.Bytes(), other.Bytes())), ErrMalformed},
		{"two armored keys", concat(k.Armor(), other.Armor()), ErrMalformed},
		{"armored key then armored message", concat(k.Armor(), armorBytes(t, "PGP MESSAGE", []byte{1})), ErrMalformed},
		{"unreadable key then a good one", concat(unreadable, k.Bytes()), ErrMalformed},
		{"good key then an unreadable one", concat(k.Bytes(), unreadable), ErrMalformed},
		{"armored message", armorBytes(t, "PGP MESSAGE", k.Bytes()), ErrMalformed},
		{"bad armor", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"), ErrMalformed},
		{"truncated", k.Bytes()[:len(k.Bytes())-10], ErrMalformed},
	}
	for _, c := range cases {
		if _, err := ParseKey(c.data); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func armorBytes(t testing.TB, blockType string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, blockType, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func TestForeignKeyAlgorithms(t *testing.T) {
	entities, err := foreignKeys()
	if err != nil {
		t.Fatal(err)
	}
	device := namedKey("device")
	for _, name := range []string{"rsa3072", "p256", "ed25519v4"} {
		t.Run(name, func(t *testing.T) {
			e := entities[name]
			pub, err := ParseKey(serializeEntity(t, e, true))
			if err != nil {
				t.Fatalf("ParseKey of the public key: %v", err)
			}
			priv, err := ParseKey(serializeEntity(t, e, false))
			if err != nil {
				t.Fatalf("ParseKey of the secret key: %v", err)
			}
			for _, profile := range allProfiles {
				plaintext := noise(3000)
				msg, _ := seal(t, profile, plaintext, device)
				m, data := splitParts(t, msg)
				// Device rewraps to the foreign party key...
				pkesk, err := Rewrap(m.KeyPackets[0], profile, device, pub)
				if err != nil {
					t.Fatalf("%s: rewrap to %s: %v", profile, name, err)
				}
				if got, err := openAll(concat(pkesk, data), priv); err != nil || !bytes.Equal(got, plaintext) {
					t.Fatalf("%s: %s opening its rewrapped record: %v", profile, name, err)
				}
				// ...and a foreign key can be the device (or recovery) key.
				msg2, _ := seal(t, profile, plaintext, pub, device)
				m2, data2 := splitParts(t, msg2)
				if got, err := openAll(msg2, priv); err != nil || !bytes.Equal(got, plaintext) {
					t.Fatalf("%s: %s opening a record sealed to it: %v", profile, name, err)
				}
				pkesk2, err := Rewrap(m2.KeyPackets[0], profile, priv, namedKey("party"))
				if err != nil {
					t.Fatalf("%s: rewrap from %s: %v", profile, name, err)
				}
				if got, err := openAll(concat(pkesk2, data2), namedKey("party")); err != nil || !bytes.Equal(got, plaintext) {
					t.Fatalf("%s: party opening a rewrap from %s: %v", profile, name, err)
				}
			}
		})
	}
}

func TestPrimaryEncryptionKey(t *testing.T) {
	// Some tools make an RSA key whose primary key also encrypts, with no
	// subkey. Seal addresses the primary key then, so Open and Rewrap must
	// use it too.
	e := newEntity(t, "all in one", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048, DefaultHash: crypto.SHA256})
	e.Subkeys = nil
	id := e.Identities["all in one"]
	id.SelfSignature.FlagEncryptCommunications = true
	id.SelfSignature.FlagEncryptStorage = true
	if err := id.SelfSignature.SignUserId(id.UserId.Id, e.PrimaryKey, e.PrivateKey, nil); err != nil {
		t.Fatal(err)
	}
	id.Signatures = []*packet.Signature{id.SelfSignature}
	k, err := ParseKey(serializeEntity(t, e, false))
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	for _, profile := range allProfiles {
		msg, _ := seal(t, profile, []byte("primary"), k.Public())
		m, data := splitParts(t, msg)
		if !m.KeyPackets[0].For(k) {
			t.Fatalf("%s: key packet is not For the key it was sealed to", profile)
		}
		if got, err := openAll(msg, k); err != nil || string(got) != "primary" {
			t.Fatalf("%s: open: %v", profile, err)
		}
		pkesk, err := Rewrap(m.KeyPackets[0], profile, k, namedKey("party"))
		if err != nil {
			t.Fatalf("%s: rewrap: %v", profile, err)
		}
		if got, err := openAll(concat(pkesk, data), namedKey("party")); err != nil || string(got) != "primary" {
			t.Fatalf("%s: party open: %v", profile, err)
		}
	}
}
