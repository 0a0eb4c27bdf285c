package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholder/keyholder/internal/server"
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
// cache on through the LISTEN connection (which hears the schema's
// announcements of revocations), and Shutdown leaves it off; on SQLite it
// stays off.
func TestTokenCacheOnWithPostgres(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			st := storetest.Open(t, b, nil)
			cfg := server.DefaultConfig()
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			cfg.Registry = prometheus.NewRegistry()
			a, err := New(context.Background(), Options{Config: cfg, Store: st, BlobDir: t.TempDir(), PostgresDSN: b.DSN})
			if err != nil {
				t.Fatal(err)
			}
			if on := st.TokenCache().On(); on != (b.Name == "postgres") {
				t.Errorf("token cache on = %v with %s", on, b.Name)
			}
			if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st.TokenCache().On() {
				t.Error("the token cache is still on after Shutdown: nothing hears revocations any more")
			}
		})
	}
}
