package envelope

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// armoredKey makes an Ed25519/Cv25519 public key created at created, with
// the given key lifetime (0: none).
func armoredKey(t *testing.T, created time.Time, lifetime time.Duration) []byte {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519,
		Time: func() time.Time { return created }, KeyLifetimeSecs: uint32(lifetime / time.Second)}
	e, err := openpgp.NewEntity("cache test", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

func TestStableUntil(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	created := now.Add(-time.Hour)
	if until, ok := StableUntil(armoredKey(t, created, 0), now); !ok || !until.IsZero() {
		t.Fatalf("a key that never expires: until %v, %v", until, ok)
	}
	until, ok := StableUntil(armoredKey(t, created, 2*time.Hour), now)
	if !ok || !until.Equal(created.Add(2*time.Hour)) {
		t.Fatalf("a key expiring at %v: until %v, %v", created.Add(2*time.Hour), until, ok)
	}
	// A signature dated later (a revocation, a new binding) takes effect then.
	future := armoredKey(t, now.Add(time.Minute), 0)
	if until, ok := StableUntil(future, now); !ok || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("a key made a minute from now: until %v, %v", until, ok)
	}
	if _, ok := StableUntil([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n"), now); ok {
		t.Fatal("garbage scanned")
	}
}

// TestKeyCacheExpires: a cached key past its stable time is parsed again,
// so a key that has expired meanwhile fails as ParseKey fails.
func TestKeyCacheExpires(t *testing.T) {
	cache := NewKeyCache(16)
	created := time.Now().Add(-time.Hour)
	expired := armoredKey(t, created, time.Minute)
	if _, err := ParseKey(expired); err == nil {
		t.Fatal("ParseKey accepts an expired key")
	}
	if _, err := cache.Parse(expired); err == nil {
		t.Fatal("the cache accepts an expired key")
	}
	// Pretend it was cached while it was valid.
	good, err := GenerateKey("stand-in")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(expired)
	cache.m.Put(sum, good, created.Add(time.Minute))
	if _, err := cache.Parse(expired); err == nil {
		t.Fatal("the cache served a key past its expiry")
	}
	// Still valid for a while: cached, with the key's expiry as its limit.
	valid := armoredKey(t, created, 2*time.Hour)
	if _, err := cache.Parse(valid); err != nil {
		t.Fatal(err)
	}
	expiry := created.Truncate(time.Second).Add(2 * time.Hour)
	if _, ok := cache.m.Get(sha256.Sum256(valid), expiry.Add(-time.Nanosecond)); !ok {
		t.Fatal("the key is not kept until its expiry")
	}
	if _, ok := cache.m.Get(sha256.Sum256(valid), expiry); ok {
		t.Fatal("the key is kept past its expiry")
	}
}
