package server

import (
	"testing"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

func genKey(t testing.TB, name string) *envelope.Key {
	t.Helper()
	k, err := envelope.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signChallenge signs the login challenge statement for nonce and
// fingerprint with k.
func signChallenge(t testing.TB, k *envelope.Key, nonce, fingerprint string) []byte {
	t.Helper()
	text, err := (&statement.Challenge{Nonce: nonce, Fingerprint: fingerprint}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := statement.Sign(text, k)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
