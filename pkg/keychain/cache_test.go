package keychain_test

import (
	"errors"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/keychain"
)

// TestCache: an unchanged chain is verified once and shared; any other
// bytes, or another user, are verified on their own (and refused when
// wrong, even right after the good chain was kept); a shared state
// refuses Apply.
func TestCache(t *testing.T) {
	k := keys(t)
	want, links := build(t, "alice", richSteps(k)...)
	c := keychain.NewCache(4)
	first, err := c.Verify("alice", links)
	if err != nil {
		t.Fatal(err)
	}
	if snap(t, first).Pin != snap(t, want).Pin || snap(t, first).Recovery != snap(t, want).Recovery {
		t.Fatalf("cached verification differs: %+v, want %+v", snap(t, first), snap(t, want))
	}
	again, err := c.Verify("alice", links)
	if err != nil || again != first {
		t.Fatalf("an unchanged chain was verified again (%p, %p, %v)", again, first, err)
	}
	forged := append([]api.ChainLink(nil), links...)
	forged[1].Signature = flipLastByte(t, forged[1].Signature)
	if _, err := c.Verify("alice", forged); !errors.Is(err, keychain.ErrChain) {
		t.Fatalf("a chain with a forged signature: %v", err)
	}
	if _, err := c.Verify("bob", links); !errors.Is(err, keychain.ErrChain) {
		t.Fatalf("alice's chain as bob's: %v", err)
	}
	shorter, err := c.Verify("alice", links[:2])
	if err != nil || shorter.Len() != 2 || shorter == first {
		t.Fatalf("a prefix of the chain: %v, %v", shorter, err)
	}
	next := extend(t, want, addDevice(k.L, k.A))
	if err := first.Apply(next); err == nil || first.Len() != len(links) {
		t.Fatalf("a shared state took a link: %v", err)
	}
	if _, err := c.Verify("alice", append(links, next)); err != nil {
		t.Fatalf("the extended chain: %v", err)
	}
}
