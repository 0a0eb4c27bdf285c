package client

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// countingTransport counts the requests by method and path.
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.Method+" "+r.URL.Path]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) take(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n[key]
	c.n = map[string]int{}
	return n
}

// A request's detail carries the user's chain: Check verifies it as it
// verifies GET /v1/device/chain's, without asking for it, and asks only a
// server that does not send it. A chain the operator forged, or another
// user's, is refused, not replaced by one fetched.
func TestCheckUsesTheServedChain(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "dora")
	ct := &countingTransport{n: map[string]int{}}
	phone, err := New(e.ts.URL, WithIdentity(dev.Identity()), WithHTTPClient(&http.Client{Transport: ct}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.SealAndUpload(ctx, user, strings.NewReader("results"), UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	det := openRequest(t, ctx, phone, KindApproval)
	want, err := lab.UserKeys(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if det.Chain == nil || det.Chain.UserID != user || len(det.Chain.Chain) != len(want.Chain) || det.Chain.Chain[0] != want.Chain[0] {
		t.Fatalf("the detail's chain %+v, want %+v", det.Chain, want)
	}
	const chainRoute = "GET " + api.PathDeviceChain
	ct.take(chainRoute)
	if _, err := phone.Check(ctx, det); err != nil {
		t.Fatal(err)
	}
	if n := ct.take(chainRoute); n != 0 {
		t.Errorf("Check asked for the chain %d times with the chain in the detail", n)
	}
	// A server before the field: Check asks.
	old := *det
	old.Chain = nil
	if _, err := phone.Check(ctx, &old); err != nil {
		t.Fatal(err)
	}
	if n := ct.take(chainRoute); n != 1 {
		t.Errorf("Check asked for the chain %d times without it in the detail, want 1", n)
	}

	// The operator adds its own device to the served chain.
	op := identity(t, "operator")
	ch, err := keychain.Verify(user, want.Chain)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := ch.Sign(statement.ActionAddDevice, op.Key, op.Key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tampered := *det
	chain := *det.Chain
	chain.Chain = append(append([]api.ChainLink(nil), chain.Chain...), forged)
	tampered.Chain = &chain
	if _, err := phone.Check(ctx, &tampered); !errors.Is(err, keychain.ErrChain) {
		t.Errorf("a chain with the operator's link: %v, want ErrChain", err)
	}
	// Another user's chain, valid as it is.
	other, _, otherLab := e.setup(ctx, "erin")
	theirs, err := otherLab.UserKeys(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	swapped := *det
	swapped.Chain = theirs
	if _, err := phone.Check(ctx, &swapped); err == nil {
		t.Error("another user's chain was accepted")
	}
	if n := ct.take(chainRoute); n != 0 {
		t.Errorf("a refused chain was replaced by one fetched (%d requests)", n)
	}
}

// A detail read just before the chain grew carries a chain older than the
// pin: Check asks the route once and goes on. A route that is behind the
// pin too is a rollback, refused.
func TestCheckOfADetailOlderThanThePin(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab := e.setup(ctx, "fern")
	ct := &countingTransport{n: map[string]int{}}
	phone, err := New(e.ts.URL, WithIdentity(dev.Identity()), WithHTTPClient(&http.Client{Transport: ct}), WithPinStore(&memPins{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.SealAndUpload(ctx, user, strings.NewReader("results"), UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	det := openRequest(t, ctx, phone, KindApproval) // one link
	rk := identity(t, "fern-recovery")
	if _, err := phone.ExtendChain(ctx, statement.ActionSetRecovery, rk.Key.Public()); err != nil { // pins two
		t.Fatal(err)
	}
	const chainRoute = "GET " + api.PathDeviceChain
	ct.take(chainRoute)
	served := append([]api.ChainLink(nil), det.Chain.Chain...)
	if _, err := phone.Check(ctx, det); err != nil {
		t.Fatalf("Check of a request read before the chain grew: %v", err)
	}
	if n := ct.take(chainRoute); n != 1 {
		t.Errorf("Check asked for the chain %d times, want 1", n)
	}
	// The route's answer went into a value of its own, not into the
	// caller's detail.
	if !reflect.DeepEqual(det.Chain.Chain, served) {
		t.Errorf("Check changed the detail's chain: %+v, was %+v", det.Chain.Chain, served)
	}
	// The operator drops the newest link: served and route are behind.
	var links []store.ChainLink
	if err := e.st.DB(ctx).Where("user_id = ?", user).Order("seq").Find(&links).Error; err != nil {
		t.Fatal(err)
	}
	if err := e.st.DB(ctx).Delete(&links[len(links)-1]).Error; err != nil {
		t.Fatal(err)
	}
	det, err = phone.DeviceRequest(ctx, det.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Check(ctx, det); !errors.Is(err, keychain.ErrPin) {
		t.Fatalf("a rolled-back chain: %v, want ErrPin", err)
	}
}
