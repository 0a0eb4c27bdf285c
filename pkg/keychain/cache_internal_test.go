package keychain

import (
	"bytes"
	"crypto"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestCacheStableUntil: a kept chain is kept until the first time its
// keys' parsing could change (envelope.StableUntil) and verified again
// after it.
func TestCacheStableUntil(t *testing.T) {
	k, err := envelope.GenerateKey("cache")
	if err != nil {
		t.Fatal(err)
	}
	s := New("carol")
	link, err := s.Sign("add-device", k, k, time.Now().Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	links := []api.ChainLink{link}
	c := NewCache(4)
	first, err := c.Verify("carol", links)
	if err != nil {
		t.Fatal(err)
	}
	sum := chainSum("carol", links)
	if kept, ok := c.m.Get(sum, time.Now()); !ok || kept != first {
		t.Fatal("the verified chain is not kept")
	}
	c.m.Put(sum, first, time.Now().Add(-time.Second)) // as if a key had expired since
	again, err := c.Verify("carol", links)
	if err != nil || again == first {
		t.Fatalf("a chain past its stable time was not verified again (%v)", err)
	}
}

// signWithLifetime signs stmt as statement.Sign does, with a signature
// expiration (what a GnuPG device with default-sig-expire makes).
func signWithLifetime(t *testing.T, stmt []byte, k *envelope.Key, now time.Time, life uint32) string {
	t.Helper()
	priv, err := k.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &packet.Config{DefaultHash: crypto.SHA256, Time: func() time.Time { return now }}
	keyID := priv.KeyId
	sig := &packet.Signature{Version: priv.PublicKey.Version, SigType: packet.SigTypeBinary, PubKeyAlgo: priv.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: now, IssuerKeyId: &keyID,
		IssuerKeyVersion: uint8(priv.PublicKey.Version), IssuerFingerprint: priv.PublicKey.Fingerprint, SigLifetimeSecs: &life}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(stmt)
	if err := sig.Sign(h, priv, cfg); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, openpgp.SignatureType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sig.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out.WriteByte('\n')
	return out.String()
}

// TestCacheLinkSignatureExpiry: a chain whose link signature expires is
// kept no longer than the signature is valid (Verify refuses it then).
func TestCacheLinkSignatureExpiry(t *testing.T) {
	k, err := envelope.GenerateKey("cache")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	link, err := New("carol").Sign("add-device", k, k, now)
	if err != nil {
		t.Fatal(err)
	}
	link.Signature = signWithLifetime(t, []byte(link.Statement), k, now, 3600)
	links := []api.ChainLink{link}
	c := NewCache(4)
	if _, err := c.Verify("carol", links); err != nil {
		t.Fatal(err)
	}
	sum := chainSum("carol", links)
	if _, ok := c.m.Get(sum, now.Add(3599*time.Second)); !ok {
		t.Fatal("the chain is not kept while its signature is valid")
	}
	if _, ok := c.m.Get(sum, now.Add(3600*time.Second)); ok {
		t.Fatal("the chain is kept past its link signature's expiry")
	}
}
