// Package servertest runs keyholderd's HTTP API inside a test process, for
// the tests of its clients (the SDK, the party CLI, device-sim): SQLite in
// a temporary directory, a temporary blob store, the local push hub, no
// rate limits and a quiet log.
package servertest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyholder/keyholder/internal/app"
	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/internal/translog"
)

// Server is a running test server.
type Server struct {
	*httptest.Server
	// Store is its database, for tests that look at rows or write the
	// rows a client could not make.
	Store *store.Store
	// Log is its transparency log, sequenced every 20 ms without
	// witnesses; LogVKey the log's verifier key (origin LogOrigin).
	Log     *translog.Log
	LogVKey string
	// LogSigner is the log's signing key, for tests that forge
	// checkpoints as a hostile operator could.
	LogSigner note.Signer
}

// LogOrigin is the test servers' log origin.
const LogOrigin = "keyholder.test/log"

// Start starts a server whose admin token is adminToken, closed when the
// test ends. wrap, if set, wraps its handler (to count calls or inject
// faults).
func Start(t testing.TB, adminToken string, wrap func(http.Handler) http.Handler) *Server {
	t.Helper()
	return StartOptions(t, adminToken, Options{Wrap: wrap})
}

// Options tune StartOptions.
type Options struct {
	// Wrap, if set, wraps the server's handler.
	Wrap func(http.Handler) http.Handler
	// Witnesses, if set, returns the witnesses of the log, given its
	// verifier key (a witness must know the log key before the first
	// checkpoint); Quorum of them must cosign (0: all).
	Witnesses func(logVKey string) []*translog.Witness
	Quorum    int
}

// StartOptions is Start with Options.
func StartOptions(t testing.TB, adminToken string, o Options) *Server {
	t.Helper()
	wrap := o.Wrap
	st := storetest.Open(t, storetest.Backends()[0], nil)
	cfg := server.DefaultConfig()
	cfg.AdminToken = adminToken
	cfg.UploadRate, cfg.AccessRate, cfg.AuthRate = 0, 0, 0
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	keyFile := t.TempDir() + "/log.key"
	signer, err := translog.LoadOrCreateKey(keyFile, LogOrigin)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := translog.VerifierKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	lc := &translog.Config{Signer: signer, Interval: 20 * time.Millisecond, Quorum: o.Quorum}
	if o.Witnesses != nil {
		lc.Witnesses = o.Witnesses(vkey)
	}
	a, err := app.New(context.Background(), app.Options{Config: cfg, Store: st, BlobDir: t.TempDir(), Wrap: wrap, Log: lc})
	if err != nil {
		t.Fatal(err)
	}
	// The test server runs keyholderd's own http.Server (its timeouts and
	// limits), on a loopback listener of its own.
	ts := httptest.NewUnstartedServer(a.HTTP.Handler)
	ts.Config = a.HTTP
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Shutdown(ctx)
		ts.Close()
	})
	return &Server{Server: ts, Store: st, Log: a.Log, LogVKey: vkey, LogSigner: signer}
}
