package server

import (
	"bytes"
	"crypto"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/envelope"
)

// Test keys are made with go-crypto so the tests can sign the auth
// challenge, which envelope.Sign (statements only) refuses.
var entities sync.Map // fingerprint -> *openpgp.Entity

func genKey(t testing.TB, name string) *envelope.Key {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		DefaultCipher: packet.CipherAES256, AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}}
	ent, err := openpgp.NewEntity(name, "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ent.SerializePrivate(&buf, nil); err != nil {
		t.Fatal(err)
	}
	k, err := envelope.ParseKey(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	entities.Store(k.Fingerprint(), ent)
	return k
}

func signChallenge(t testing.TB, k *envelope.Key, text []byte) []byte {
	t.Helper()
	v, ok := entities.Load(k.Fingerprint())
	if !ok {
		t.Fatal("no entity for key")
	}
	var out bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&out, v.(*openpgp.Entity), bytes.NewReader(text), &packet.Config{DefaultHash: crypto.SHA256}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
