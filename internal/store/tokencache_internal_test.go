package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
		put(c, ticket{c.gen, c.now()}, ActorDevice, string(rune(i)), dev, exp)
	}
	if n := len(c.entries); n > tokenCacheMax {
		t.Fatalf("%d entries, more than %d", n, tokenCacheMax)
	}
}

// TestTokenCacheBytesBounded: what the cache holds is bounded in bytes, not
// only in entries. Every read clones the owner's key, so 10 000 tokens of
// one device (or party) whose armored key is 256 KiB (the most an enrollment
// or a registration takes; many user ids make one) held 2.5 GB until the
// next flush.
func TestTokenCacheBytesBounded(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c := newTokenCache(func() time.Time { return now })
	c.Changed()
	exp := now.Add(time.Hour)
	held := func() (n int) {
		for _, e := range c.entries {
			switch o := e.owner.(type) {
			case *Device:
				n += len(o.PublicKey) + len(o.PushToken)
			case *Party:
				n += len(o.PublicKey) + len(o.Name)
			}
		}
		return n
	}
	big := make([]byte, 256<<10)
	for i := range tokenCacheMax {
		// One array for the test; in the server each read is a copy.
		put(c, ticket{c.gen, c.now()}, ActorDevice, strconv.Itoa(i), &Device{ID: "d", PublicKey: big}, exp)
		put(c, ticket{c.gen, c.now()}, ActorParty, strconv.Itoa(i), &Party{ID: "p", PublicKey: big}, exp)
	}
	if n := held(); n > tokenCacheMaxBytes {
		t.Fatalf("the cache holds %d MiB of owners, more than %d MiB", n>>20, tokenCacheMaxBytes>>20)
	}
	// Owners just under the per-entry limit: the total bound holds, and the
	// count matches what is held.
	medium := make([]byte, tokenCacheMaxEntry-1<<10)
	for i := range tokenCacheMax {
		put(c, ticket{c.gen, c.now()}, ActorParty, strconv.Itoa(i), &Party{ID: "p", PublicKey: medium}, exp)
	}
	sum := 0
	for k, e := range c.entries {
		sum += entrySize(k, e.owner)
	}
	if n := held(); n > tokenCacheMaxBytes || sum != c.bytes || len(c.entries) == 0 {
		t.Fatalf("%d entries hold %d bytes (at most %d), counted %d of %d", len(c.entries), n, tokenCacheMaxBytes, c.bytes, sum)
	}
	// Owners of ordinary size (an armored RSA-4096 key is about 3 KiB, an
	// FCM token 200 bytes) are kept as before, up to tokenCacheMax.
	c.Flush()
	small := &Device{ID: "d", PublicKey: make([]byte, 3<<10), PushToken: string(make([]byte, 200))}
	hash := func(i int) string { return fmt.Sprintf("%064x", i) }
	for i := range tokenCacheMax {
		put(c, ticket{c.gen, c.now()}, ActorDevice, hash(i), small, exp)
	}
	if len(c.entries) != tokenCacheMax {
		t.Fatalf("%d owners of 3 KiB kept, want %d", len(c.entries), tokenCacheMax)
	}
	if _, _, _, ok := get[Device](c, ActorDevice, hash(0)); !ok {
		t.Fatal("an owner of 3 KiB was not kept")
	}
	// Putting one token twice (two requests missing at once) counts it once.
	c.Flush()
	for range 3 {
		put(c, ticket{c.gen, c.now()}, ActorDevice, hash(0), small, exp)
	}
	if want := entrySize(tokenKey{ActorDevice, hash(0)}, small); c.bytes != want {
		t.Fatalf("one entry counted as %d bytes, want %d", c.bytes, want)
	}
}

// TestTokenCacheProbe: Listening leaves the cache off and sends a probe;
// only hearing that probe turns it on. A LISTEN connection that hears
// something else (another database's notifications), or whose probe could
// not be sent, leaves it off; Lost forgets the probe awaited.
func TestTokenCacheProbe(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c := newTokenCache(func() time.Time { return now })
	sent := make(chan string, 4)
	fail := false
	c.probe = func(p string) error {
		if fail {
			return errors.New("no connection")
		}
		sent <- p
		return nil
	}
	c.Listening()
	nonce := <-sent
	if c.On() {
		t.Fatal("on before the probe was heard")
	}
	c.Heard("public") // a schema's announcement: not the probe
	c.Heard("probe " + strings.Repeat("A", len(nonce)-6))
	if c.On() {
		t.Fatal("another payload turned the cache on")
	}
	c.Heard(nonce)
	if !c.On() {
		t.Fatal("the probe was heard, the cache is still off")
	}
	c.Heard(nonce) // a replay changes nothing but empties
	c.Lost()
	c.Heard(nonce)
	if c.On() {
		t.Fatal("a probe from before the loss turned the cache on")
	}
	c.Listening()
	second := <-sent
	if second == nonce {
		t.Fatal("two probes with the same payload")
	}
	c.Heard(nonce)
	if c.On() {
		t.Fatal("the previous probe turned the cache on")
	}
	fail = true
	c.Listening()
	c.Heard(second)
	if c.On() {
		t.Fatal("on although the last probe could not be sent")
	}
}

// An entry's 5 s count from the start of the read that filled it, and a
// cached owner shares nothing with a caller's.
func TestTokenCacheEntryLife(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	c := newTokenCache(func() time.Time { return now })
	c.Changed()
	revoked, orig := now, now
	dev := &Device{ID: "d1", Status: DeviceActive, PublicKey: []byte("key"), RevokedAt: &revoked}
	_, _, tk, _ := get[Device](c, ActorDevice, "h")
	now = now.Add(tokenCacheTTL - time.Second) // a slow read
	put(c, tk, ActorDevice, "h", dev, now.Add(time.Hour))
	now = now.Add(time.Second)
	if _, _, _, ok := get[Device](c, ActorDevice, "h"); ok {
		t.Fatal("the entry lived longer than the TTL from its read's start")
	}
	_, _, tk, _ = get[Device](c, ActorDevice, "h")
	put(c, tk, ActorDevice, "h", dev, now.Add(time.Hour))
	dev.PublicKey[0] = 'X'
	*dev.RevokedAt = now.Add(time.Hour)
	got, _, _, _ := get[Device](c, ActorDevice, "h")
	if string(got.PublicKey) != "key" || !got.RevokedAt.Equal(orig) {
		t.Fatal("the cached owner shares its key or time with the caller's")
	}
	got.PublicKey[0] = 'Y'
	if again, _, _, _ := get[Device](c, ActorDevice, "h"); string(again.PublicKey) != "key" {
		t.Fatal("a caller changed the cached key")
	}
}
