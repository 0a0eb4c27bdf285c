package keychain

import (
	"testing"
	"time"

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
