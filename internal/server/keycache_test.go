package server

import (
	"sync"
	"testing"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

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
