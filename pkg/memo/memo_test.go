package memo

import (
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	now := time.Now()
	c := New[string](2)
	a, b, d := [32]byte{1}, [32]byte{2}, [32]byte{3}
	if _, ok := c.Get(a, now); ok {
		t.Fatal("found in an empty cache")
	}
	c.Put(a, "forever", time.Time{})
	c.Put(b, "a minute", now.Add(time.Minute))
	for _, tc := range []struct {
		sum  [32]byte
		at   time.Time
		want string
		ok   bool
	}{
		{a, now.Add(100 * 365 * 24 * time.Hour), "forever", true},
		{b, now, "a minute", true},
		{b, now.Add(time.Minute - 1), "a minute", true},
		{b, now.Add(time.Minute), "", false},
		{d, now, "", false},
	} {
		if v, ok := c.Get(tc.sum, tc.at); v != tc.want || ok != tc.ok {
			t.Errorf("Get(%x, %v) = %q, %v; want %q, %v", tc.sum[0], tc.at.Sub(now), v, ok, tc.want, tc.ok)
		}
	}
	c.Put(a, "again", time.Time{}) // a replacement makes no room
	if v, ok := c.Get(b, now); !ok || v != "a minute" {
		t.Fatal("replacing an entry evicted another")
	}
	c.Put(d, "third", time.Time{})
	if len(c.m) != 2 {
		t.Fatalf("%d entries, at most 2", len(c.m))
	}
	if v, ok := c.Get(d, now); !ok || v != "third" {
		t.Fatal("the newest entry is missing")
	}
}

func TestEarliest(t *testing.T) {
	now := time.Now()
	later := now.Add(time.Hour)
	for _, tc := range []struct{ a, b, want time.Time }{
		{time.Time{}, time.Time{}, time.Time{}},
		{time.Time{}, now, now},
		{now, time.Time{}, now},
		{now, later, now},
		{later, now, now},
	} {
		if got := Earliest(tc.a, tc.b); !got.Equal(tc.want) {
			t.Errorf("Earliest(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}
