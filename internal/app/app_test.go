package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
)

// TestServeAndShutdown assembles a server as keyholderd serve does, serves
// a request through the wrapper, and shuts it down: Serve returns
// http.ErrServerClosed and the listener is closed.
func TestServeAndShutdown(t *testing.T) {
	st := storetest.Open(t, storetest.Backends()[0], nil)
	cfg := server.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Registry = prometheus.NewRegistry()
	var wrapped atomic.Int32
	a, err := New(context.Background(), Options{Config: cfg, Store: st, BlobDir: t.TempDir(), Sweep: true,
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { wrapped.Add(1); h.ServeHTTP(w, r) })
		}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ln, "", "") }()
	url := "http://" + ln.Addr().String()
	for _, path := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		// The push metrics are registered with the server's registry.
		if path == "/metrics" && !strings.Contains(string(body), "keyholder_push_local_overflow_total") {
			t.Errorf("/metrics lacks the push metrics")
		}
	}
	if n := wrapped.Load(); n != 2 {
		t.Errorf("the wrapper saw %d requests, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatal("the server still answers after Shutdown")
	}
}

func TestNewNeedsAStore(t *testing.T) {
	if _, err := New(context.Background(), Options{BlobDir: t.TempDir()}); err == nil {
		t.Fatal("New without a store succeeded")
	}
}

func TestNewBadBlobDir(t *testing.T) {
	st := storetest.Open(t, storetest.Backends()[0], nil)
	if _, err := New(context.Background(), Options{Store: st, BlobDir: "/proc/no-such-dir/blobs"}); err == nil {
		t.Fatal("New with an unusable blob directory succeeded")
	}
}

// TestTokenCacheOnWithPostgres: on PostgreSQL, New turns the store's token
// cache on once its LISTEN connection has heard the probe the store sent
// through its own connections, and Shutdown leaves it off; on SQLite it
// stays off. A LISTEN connection on another database (a PostgresDSN that
// is not the store's; a pooling proxy does the same) never hears the probe:
// the cache stays off, for it would not hear revocations either.
func TestTokenCacheOnWithPostgres(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			st := storetest.Open(t, b, nil)
			a := newApp(t, st, b.DSN)
			if b.Name == "postgres" {
				waitOn(t, st, true, 10*time.Second)
			} else {
				waitOn(t, st, false, 200*time.Millisecond)
			}
			if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st.TokenCache().On() {
				t.Error("the token cache is still on after Shutdown: nothing hears revocations any more")
			}
		})
	}
	for _, b := range storetest.Backends() {
		if b.Name != "postgres" {
			continue
		}
		t.Run("another database", func(t *testing.T) {
			st := storetest.Open(t, b, nil)
			u, err := url.Parse(b.DSN)
			if err != nil {
				t.Fatal(err)
			}
			u.Path = "/postgres"
			a := newApp(t, st, u.String())
			defer a.Shutdown(context.Background())
			waitOn(t, st, false, time.Second)
		})
	}
}

func newApp(t *testing.T, st *store.Store, pgDSN string) *App {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Registry = prometheus.NewRegistry()
	a, err := New(context.Background(), Options{Config: cfg, Store: st, BlobDir: t.TempDir(), PostgresDSN: pgDSN})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitOn waits up to d for the store's token cache to be on (want), or,
// wanting it off, checks it stays off for d.
func waitOn(t *testing.T, st *store.Store, want bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if on := st.TokenCache().On(); on && !want {
			t.Fatal("the token cache turned on")
		} else if on && want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if want {
		t.Fatalf("the token cache is still off after %s", d)
	}
}
