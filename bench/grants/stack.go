package main

// startStack and its helpers: the server under measurement, assembled as
// keyholderd serve assembles it.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholder/keyholder/bench/internal/measure"
	"github.com/keyholder/keyholder/internal/app"
	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/translog"
)

type stack struct {
	db      string
	st      *store.Store
	srv     *server.Server
	url     string
	pgLocal bool // PostgreSQL runs on this machine: count its CPU
	close   func()
}

const adminToken = "bench-admin-token-0123456789abcdef"

// labeled runs the server's handlers under the pprof label side=server.
func labeled(h http.Handler) http.Handler {
	labels := pprof.Labels("side", "server")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pprof.Do(r.Context(), labels, func(context.Context) { h.ServeHTTP(w, r) })
	})
}

// startStack opens the store (a fresh PostgreSQL schema, or a SQLite file
// in dir), and serves keyholderd on a loopback port as keyholderd serve
// assembles it (internal/app): PostgreSQL LISTEN/NOTIFY behind the local
// push channel on PostgreSQL, the local hub alone on SQLite.
func startStack(ctx context.Context, db, dsn, dir string) (*stack, error) {
	s := &stack{db: db}
	var cleanups []func()
	s.close = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	opts := store.Options{MaxOpenConns: *maxConns, MaxIdleConns: *idleConns}
	var err error
	if db == "postgres" {
		opts.Schema = "kh_bench_" + store.NewID()[:16]
		// A quick reachability check, so "both" can skip PostgreSQL.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		probe, err := store.Open(dsn, store.Options{})
		if err != nil {
			return nil, skipError{err}
		}
		err = probe.Ping(pctx)
		probe.Close()
		if err != nil {
			return nil, skipError{fmt.Errorf("PostgreSQL unreachable at %s: %v", redact(dsn), err)}
		}
		s.st, err = store.Open(dsn, opts)
		if err != nil {
			return nil, err
		}
		st := s.st
		cleanups = append(cleanups, func() {
			if err := st.DropSchema(opts.Schema); err != nil {
				fmt.Fprintf(os.Stderr, "grants: dropping schema %s: %v\n", opts.Schema, err)
			}
			st.Close()
		})
		s.pgLocal = measure.PostgresIsLocal(dsn)
	} else {
		s.st, err = store.Open(filepath.Join(dir, "keyholder.db"), opts)
		if err != nil {
			return nil, err
		}
		st := s.st
		cleanups = append(cleanups, func() { st.Close() })
	}
	if err := s.st.Migrate(ctx); err != nil {
		s.close()
		return nil, err
	}
	cfg := server.DefaultConfig()
	cfg.AdminToken = adminToken
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Registry = prometheus.NewRegistry()
	// The per-party rate limit on access requests (1/s, burst 20 by
	// default) protects a user's phone from one party; a throughput
	// benchmark with a few parties must lift it, as it does the others.
	cfg.AccessRate, cfg.UploadRate, cfg.AuthRate = 0, 0, 0
	cfg.MaxUploadsPerParty = 1024 // the per-record uploads run many at once per party
	ao := app.Options{Config: cfg, Store: s.st, BlobDir: filepath.Join(dir, "blobs"), Wrap: labeled}
	if db == "postgres" {
		ao.PostgresDSN, ao.PushChannel = dsn, "kh_bench_"+store.NewID()[:16]
	}
	if *logFlag {
		// The transparency log's sequencer, as keyholderd serve runs it.
		signer, err := translog.LoadOrCreateKey(filepath.Join(dir, "log.key"), "keyholder.bench/log")
		if err != nil {
			s.close()
			return nil, err
		}
		ao.Log = &translog.Config{Signer: signer}
	}
	a, err := app.New(ctx, ao)
	if err != nil {
		s.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Shutdown(ctx)
		s.close()
		return nil, err
	}
	go a.Serve(ln, "", "")
	s.srv, s.url = a.Server, "http://"+ln.Addr().String()
	cleanups = append(cleanups, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(sctx)
	})
	return s, nil
}

func redact(dsn string) string {
	if i := strings.Index(dsn, "@"); i >= 0 {
		if j := strings.Index(dsn, "://"); j >= 0 && j < i {
			return dsn[:j+3] + "…" + dsn[i:]
		}
	}
	return dsn
}
