package client

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// TestWaitDecidedIsWoken: WaitDecided and WaitAccess hear of the device's
// answer when it is made, not at their next poll (here an hour away).
func TestWaitDecidedIsWoken(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, dev, lab0 := e.setup(ctx, "dora")
	lab, err := New(e.ts.URL, WithIdentity(lab0.Identity()), WithPollInterval(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	up, err := lab.SealAndUpload(ctx, user, strings.NewReader("woken"), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *api.Record, 1)
	go func() {
		r, err := lab.WaitDecided(ctx, up.Record.ID)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	time.Sleep(100 * time.Millisecond) // let the wait start
	approveAll(t, ctx, dev)
	select {
	case r := <-done:
		if r == nil || r.State != api.RecordApproved {
			t.Fatalf("WaitDecided: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("WaitDecided was not woken by the approval")
	}

	ar, err := lab.RequestAccess(ctx, up.Record.ID, "check", 0)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan *api.AccessStatus, 1)
	go func() {
		st, err := lab.WaitAccess(ctx, ar.RequestID)
		if err != nil {
			t.Error(err)
		}
		answered <- st
	}()
	time.Sleep(100 * time.Millisecond)
	approveAll(t, ctx, dev)
	select {
	case st := <-answered:
		if st == nil || st.Answer != api.AnswerGranted {
			t.Fatalf("WaitAccess: %+v", st)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("WaitAccess was not woken by the grant")
	}
}

// TestWaitPollsAServerThatDoesNotWait: against a server that ignores the
// wait parameter, the wait polls at its interval instead of spinning.
func TestWaitPollsAServerThatDoesNotWait(t *testing.T) {
	var calls atomic.Int32
	srv := http.NewServeMux()
	srv.HandleFunc("/v1/records/{id}", func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		state := "pending"
		if n == 4 {
			state = "approved"
		}
		w.Write([]byte(`{"id":"` + r.PathValue("id") + `","state":"` + state + `"}`))
	})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c, err := New(ts.URL, WithPollInterval(20*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c.token, c.expires = "t", time.Now().Add(time.Hour)
	start := time.Now()
	r, err := c.WaitDecided(ctxT(t), "00000000000000000000000000000001")
	if err != nil || r.State != api.RecordApproved || calls.Load() != 4 {
		t.Fatalf("%+v %v after %d calls", r, err, calls.Load())
	}
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Fatalf("four calls in %s: the wait did not poll at its interval", took)
	}
}

// TestWaitHoldFitsTheHTTPTimeout: a wait never asks the server to hold a
// call longer than the HTTP client would wait for it.
func TestWaitHoldFitsTheHTTPTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout, want time.Duration
	}{
		{0, DefaultWait},
		{time.Minute, DefaultWait},
		{10 * time.Second, 9 * time.Second},
		{time.Second / 2, -time.Second / 2}, // less than a second: no wait asked
	} {
		c, err := New("http://127.0.0.1:1", WithHTTPClient(&http.Client{Timeout: tc.timeout}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.hold(); got != tc.want {
			t.Errorf("timeout %s: hold %s, want %s", tc.timeout, got, tc.want)
		}
	}
}
