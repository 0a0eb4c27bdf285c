package client

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// TestSealRetryAfterLostAnswer: SealAndUpload with an Idempotency-Key,
// called again after its first answer was lost, reports the stored record
// (Existing) instead of sealing again into a 409; it sends no body. When
// the lookup misses (the first attempt commits while the retry is on its
// way), the server's 409 names the record and the result is the same.
// The key used for a different upload is an error naming the record.
func TestSealRetryAfterLostAnswer(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user, _, party := e.setup(ctx, "dora")
	var uploads, hideLookup atomic.Int32
	h := e.ts.Config.Handler
	e.ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/records") {
			uploads.Add(1)
		}
		if hideLookup.Load() == 1 && r.URL.Query().Has(api.QueryIdempotencyKey) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"records":[]}`))
			return
		}
		h.ServeHTTP(w, r)
	})
	opts := UploadOptions{ContentType: "text/plain", Size: 5, IdempotencyKey: "invoice-9", Private: &PrivateMetadata{Title: "t"}}
	first, err := party.SealAndUpload(ctx, user, strings.NewReader("hello"), opts)
	if err != nil || first.Existing {
		t.Fatalf("first upload: %+v %v", first, err)
	}
	// The answer was lost; the party runs the same command again.
	again, err := party.SealAndUpload(ctx, user, strings.NewReader("hello"), opts)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !again.Existing || again.Record.ID != first.Record.ID || again.Digest != first.Digest || len(again.Recipients) == 0 {
		t.Fatalf("retry reported %+v, want the record %s", again, first.Record.ID)
	}
	if n := uploads.Load(); n != 1 {
		t.Fatalf("%d uploads sent, want 1", n)
	}
	hideLookup.Store(1)
	raced, err := party.SealAndUpload(ctx, user, strings.NewReader("hello"), opts)
	if err != nil || !raced.Existing || raced.Record.ID != first.Record.ID {
		t.Fatalf("retry past the lookup: %+v %v", raced, err)
	}
	hideLookup.Store(0)
	other := opts
	other.ContentType = "application/pdf"
	if _, err := party.SealAndUpload(ctx, user, strings.NewReader("other"), other); err == nil || !strings.Contains(err.Error(), first.Record.ID) {
		t.Fatalf("the key reused for another upload: %v", err)
	}
}

// TestRequestAccessIdempotent: the same access request sent twice with
// one key is one request.
func TestRequestAccessIdempotent(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user, dev, party := e.setup(ctx, "emil")
	up, err := party.SealAndUpload(ctx, user, strings.NewReader("x"), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	a, err := party.RequestAccessIdempotent(ctx, up.Record.ID, "audit", 600, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := party.RequestAccessIdempotent(ctx, up.Record.ID, "audit", 600, "req-1")
	if err != nil || b.RequestID != a.RequestID {
		t.Fatalf("retry: %+v %v, first %s", b, err, a.RequestID)
	}
	reqs, err := dev.DeviceRequests(ctx)
	if err != nil || len(reqs) != 1 {
		t.Fatalf("the phone has %d requests (%v), want 1", len(reqs), err)
	}
}
