package store

import (
	"testing"
	"time"
)

// The cache's rules, one by one: off until Changed; a read begun before a
// change is not kept; Lost turns it off; entries end at the TTL and at the
// token's expiry; callers get copies; the size is bounded.
func TestTokenCacheRules(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c := newTokenCache(func() time.Time { return now })
	dev := &Device{ID: "d1", Status: DeviceActive}
	exp := now.Add(time.Hour)
	hit := func() bool {
		_, _, _, ok := get[Device](c, ActorDevice, "h")
		return ok
	}
	store := func() {
		_, _, gen, _ := get[Device](c, ActorDevice, "h")
		put(c, gen, ActorDevice, "h", dev, exp)
	}

	store()
	if hit() {
		t.Fatal("the cache kept an owner before it heard of changes (Changed)")
	}
	c.Changed()
	store()
	if !hit() {
		t.Fatal("the cache kept nothing once on")
	}
	if _, _, _, ok := get[Party](c, ActorParty, "h"); ok {
		t.Fatal("a device token answered for a party token of the same hash")
	}

	// A read that began before a change must not be cached after it.
	c.Flush()
	_, _, gen, _ := get[Device](c, ActorDevice, "h")
	c.Changed() // a revocation announced while the read was on its way
	put(c, gen, ActorDevice, "h", dev, exp)
	if hit() {
		t.Fatal("a read from before a change was cached after it")
	}

	store()
	c.Lost()
	if hit() {
		t.Fatal("an entry survived the loss of the LISTEN connection")
	}
	store()
	if hit() {
		t.Fatal("the cache kept an owner while changes may go unheard")
	}

	c.Changed()
	store()
	now = now.Add(tokenCacheTTL)
	if hit() {
		t.Fatal("an entry outlived the TTL")
	}
	exp = now.Add(time.Second)
	store()
	now = now.Add(time.Second)
	if hit() {
		t.Fatal("an entry outlived its token")
	}

	exp = now.Add(time.Hour)
	store()
	got, _, _, _ := get[Device](c, ActorDevice, "h")
	got.Status = DeviceRevoked
	if again, _, _, _ := get[Device](c, ActorDevice, "h"); again.Status != DeviceActive {
		t.Fatal("a caller's change reached the cached owner")
	}
	dev.Status = DeviceRevoked
	if again, _, _, _ := get[Device](c, ActorDevice, "h"); again.Status != DeviceActive {
		t.Fatal("the cache holds the caller's owner, not a copy")
	}

	for i := range tokenCacheMax + 1 {
		put(c, c.gen, ActorDevice, string(rune(i)), dev, exp)
	}
	if n := len(c.entries); n > tokenCacheMax {
		t.Fatalf("%d entries, more than %d", n, tokenCacheMax)
	}
}
