package server

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
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

func TestStoredKeyIsCached(t *testing.T) {
	k, err := envelope.GenerateKey("cached")
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().Armor()
	a, err := storedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	b, err := storedKey(append([]byte(nil), pub...))
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.Fingerprint() != k.Fingerprint() {
		t.Fatal("the same key bytes were parsed twice")
	}
	// Other bytes are another entry, and a malformed key is never cached.
	if _, err := storedKey(pub[:len(pub)/2]); err == nil {
		t.Fatal("a truncated key parsed")
	}
	if _, err := storedKey(pub[:len(pub)/2]); err == nil {
		t.Fatal("a truncated key parsed the second time")
	}
	// Concurrent use of one cached key (go test -race).
	stmt, err := (&statement.Challenge{Nonce: "nonce", Fingerprint: k.Fingerprint()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := statement.Sign(stmt, k)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := storedKey(pub)
			if err == nil {
				err = statement.Verify(stmt, sig, key)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestKeyStableUntil(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	created := now.Add(-time.Hour)
	if until, ok := keyStableUntil(armoredKey(t, created, 0), now); !ok || !until.IsZero() {
		t.Fatalf("a key that never expires: until %v, %v", until, ok)
	}
	until, ok := keyStableUntil(armoredKey(t, created, 2*time.Hour), now)
	if !ok || !until.Equal(created.Add(2*time.Hour)) {
		t.Fatalf("a key expiring at %v: until %v, %v", created.Add(2*time.Hour), until, ok)
	}
	// A signature dated later (a revocation, a new binding) takes effect then.
	future := armoredKey(t, now.Add(time.Minute), 0)
	if until, ok := keyStableUntil(future, now); !ok || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("a key made a minute from now: until %v, %v", until, ok)
	}
	if _, ok := keyStableUntil([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n"), now); ok {
		t.Fatal("garbage scanned")
	}
}

// TestStoredKeyExpires: a cached key past its stable time is parsed again,
// so a key that has expired meanwhile fails as envelope.ParseKey fails.
func TestStoredKeyExpires(t *testing.T) {
	created := time.Now().Add(-time.Hour)
	expired := armoredKey(t, created, time.Minute)
	if _, err := envelope.ParseKey(expired); err == nil {
		t.Fatal("ParseKey accepts an expired key")
	}
	if _, err := storedKey(expired); err == nil {
		t.Fatal("storedKey accepts an expired key")
	}
	// Pretend it was cached while it was valid.
	good, err := envelope.GenerateKey("stand-in")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(expired)
	publicKeys.Lock()
	publicKeys.m[sum] = cachedKey{key: good, until: created.Add(time.Minute)}
	publicKeys.Unlock()
	if _, err := storedKey(expired); err == nil {
		t.Fatal("storedKey served a cached key past its expiry")
	}
	// Still valid for a while: cached, with the key's expiry as its limit.
	valid := armoredKey(t, created, 2*time.Hour)
	if _, err := storedKey(valid); err != nil {
		t.Fatal(err)
	}
	publicKeys.Lock()
	e, ok := publicKeys.m[sha256.Sum256(valid)]
	publicKeys.Unlock()
	if !ok || !e.until.Equal(created.Truncate(time.Second).Add(2*time.Hour)) {
		t.Fatalf("cached until %v (%v), want the key's expiry", e.until, ok)
	}
}
