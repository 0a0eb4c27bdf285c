package server

import (
	"strings"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
)

// TestUnregisteredKeyLogin: a party whose key is not registered is told to
// have it registered, not only (as before) that its key is not "an
// enrolled key", which speaks of devices. The answer is the same for
// every failure, so it does not tell who is registered.
func TestUnregisteredKeyLogin(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	k := genKey(t, "unregistered lab")
	var ch api.ChallengeResponse
	e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: k.Fingerprint()}, 200, &ch)
	sig := signChallenge(t, k, ch.Nonce, k.Fingerprint())
	resp, data := e.do("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: k.Fingerprint(), Nonce: ch.Nonce, Signature: string(sig)})
	p := e.wantProblem(resp, data, 401)
	if !strings.Contains(p.Detail, "register this key first") {
		t.Fatalf("401 for an unregistered key says %q", p.Detail)
	}
	// A wrong nonce for a registered party gets the very same answer.
	lab := e.newParty("lab")
	resp, data = e.do("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: lab.key.Fingerprint(), Nonce: "no-such-nonce", Signature: string(sig)})
	if q := e.wantProblem(resp, data, 401); q.Detail != p.Detail {
		t.Fatalf("the answers differ, which tells who is registered: %q vs %q", q.Detail, p.Detail)
	}
}
