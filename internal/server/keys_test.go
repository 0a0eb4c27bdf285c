package server

import (
	"testing"

	"github.com/keyholder/keyholder/pkg/api"

	"github.com/keyholder/keyholder/pkg/envelope"
)

func genKey(t testing.TB, name string) *envelope.Key {
	t.Helper()
	k, err := envelope.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signChallenge(t testing.TB, k *envelope.Key, text []byte) []byte {
	t.Helper()
	sig, err := envelope.Sign(text, k)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// The challenge text of pkg/api is envelope's canonical challenge statement.
func TestChallengeTextIsCanonical(t *testing.T) {
	k := genKey(t, "k")
	nonce := randomSecret(32)
	want, err := (&envelope.Challenge{Nonce: nonce, Fingerprint: k.Fingerprint()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got := api.ChallengeText(nonce, k.Fingerprint()); string(got) != string(want) {
		t.Fatalf("ChallengeText %q, envelope %q", got, want)
	}
}
