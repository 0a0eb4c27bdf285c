package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestAuthRateLimit: the login challenge, token, enrollment (and its info)
// and link request routes share
// a per-client-address bucket; past it they answer 429 with Retry-After and
// write nothing (no nonce row), while another address has its own budget.
func TestAuthRateLimit(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.AuthRate, c.AuthBurst = rate.Limit(0.001), 3 })
	fp := genKey(t, "k").Fingerprint()
	for i := 0; i < 3; i++ {
		e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: fp}, 200, nil)
	}
	nonces := func() int64 {
		var n int64
		e.st.DB(t.Context()).Model(&store.Nonce{}).Count(&n)
		return n
	}
	before, n0 := e.snap(), nonces()
	for _, c := range []struct {
		path string
		body any
	}{
		{api.PathAuthChallenge, api.ChallengeRequest{Fingerprint: fp}},
		{api.PathAuthToken, api.TokenRequest{Fingerprint: fp, Nonce: "n", Signature: "s"}},
		{api.PathEnroll, api.EnrollRequest{Code: "AAAA-BBBB", PublicKey: "k"}},
		{api.PathEnrollInfo, api.EnrollInfoRequest{Code: "AAAA-BBBB"}},
		{api.PathLinkRequests, api.LinkRequestCreate{User: "alice", PublicKey: "k"}},
	} {
		resp, data := e.do("POST", c.path, "", c.body)
		if p := e.wantProblem(resp, data, http.StatusTooManyRequests); p.Type != api.ProblemRateLimited {
			t.Fatalf("%s: %s", c.path, p.Type)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: no Retry-After", c.path)
		}
	}
	e.unchanged(before)
	if nonces() != n0 {
		t.Fatal("a refused challenge wrote a nonce")
	}

	// Other addresses have their own budget; an IPv6 /64 is one client.
	post := func(remote string) int {
		body, _ := json.Marshal(api.ChallengeRequest{Fingerprint: fp})
		req := httptest.NewRequest("POST", api.PathAuthChallenge, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post("203.0.113.9:4711"); code != 200 {
		t.Fatalf("another IPv4 address: %d", code)
	}
	for i := 0; i < 3; i++ {
		if code := post("[2001:db8:1:2::1]:443"); code != 200 {
			t.Fatalf("IPv6 client, request %d: %d", i, code)
		}
	}
	if code := post("[2001:db8:1:2:ffff::7]:443"); code != http.StatusTooManyRequests {
		t.Fatalf("same /64, another address: %d, want 429", code)
	}
	if code := post("[2001:db8:1:3::1]:443"); code != 200 {
		t.Fatalf("another /64: %d", code)
	}
}

// TestLimiterSetPrunes: buckets that have refilled are dropped once there
// are many, so distinct addresses cannot grow the set without bound.
func TestLimiterSetPrunes(t *testing.T) {
	l := newLimiterSet(rate.Every(time.Millisecond), 1)
	for i := 0; i < pruneAbove; i++ {
		l.allow(string(rune(i + 1)))
	}
	time.Sleep(5 * time.Millisecond) // every bucket refills
	l.allow("new")
	if n := l.len(); n > 10 {
		t.Fatalf("%d buckets after pruning", n)
	}
}
