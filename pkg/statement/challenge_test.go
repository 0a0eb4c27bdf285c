package statement

import (
	"errors"
	"testing"
)

func TestChallengeStatement(t *testing.T) {
	k := stmtKey(t, "device")
	c := &Challenge{Nonce: "q3vV0d9cJ0cXW8Ff2v7m1yHn6oB5cT4e0Jt0o9Qz1aE", Fingerprint: k.Fingerprint()}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "keyholder-auth-v1\nnonce: " + c.Nonce + "\nfingerprint: " + k.Fingerprint() + "\n"
	if string(b) != want {
		t.Fatalf("Marshal = %q, want %q", b, want)
	}
	got, err := ParseChallenge(b)
	if err != nil || *got != *c {
		t.Fatalf("ParseChallenge = %+v, %v", got, err)
	}
	sig, err := Sign(b, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(b, sig, k.Public()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// A challenge signature is not an approval signature, and the nonce
	// cannot smuggle a line break into another field.
	if _, err := ParseApproval(b); !errors.Is(err, ErrStatement) {
		t.Fatalf("challenge parsed as approval: %v", err)
	}
	for _, bad := range []string{"a\nrecord: x", "", "a b", string(make([]byte, 65))} {
		if _, err := (&Challenge{Nonce: bad, Fingerprint: k.Fingerprint()}).Marshal(); !errors.Is(err, ErrStatement) {
			t.Errorf("nonce %q accepted: %v", bad, err)
		}
	}
	if err := Verify(b, sig, stmtKey(t, "other")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("challenge verified with another key: %v", err)
	}
}
