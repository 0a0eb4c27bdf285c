// Package app assembles keyholderd from its parts: the blob store, the push
// channels (the local hub, PostgreSQL LISTEN/NOTIFY between replicas,
// optionally FCM), the API server and the HTTP server in front of it. It is
// the one wiring that `keyholderd serve`, the benchmarks (bench/grants) and
// the clients' tests (internal/server/servertest) run; they differ only in
// Options.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/translog"
)

// Options are what differs between the programs that run a server.
type Options struct {
	// Config is the API server's configuration (admin token, limits, log,
	// metrics registry). PushMetrics is filled in if nil, and registered
	// with Registry if that is set.
	Config server.Config
	// Store is the database, opened and migrated by the caller, which also
	// closes it after Shutdown.
	Store *store.Store
	// BlobDir is the directory of the encrypted records, unless Blobs is
	// set (keyholderd serve --blob opens an S3 bucket there).
	BlobDir string
	Blobs   blob.Store
	// PostgresDSN, if set, relays pushes between replicas with PostgreSQL
	// LISTEN/NOTIFY on that database, on PushChannel (empty: the default
	// channel). It must be the Store's database: the same connection hears
	// the store's announcements of revocations for its token cache.
	PostgresDSN string
	PushChannel string
	// FCM, if set, also sends pushes through Firebase.
	FCM push.Notifier
	// Sweep runs the sweeper (expiring records and requests) until
	// Shutdown. Tests and benchmarks leave it off and sweep when they mean
	// to.
	Sweep bool
	// Wrap, if set, wraps the API handler (pprof labels, fault injection).
	Wrap func(http.Handler) http.Handler
	// Log, if set, runs the transparency log: sequencing and witnessing in
	// the background until Shutdown, and its routes.
	Log *translog.Config
}

// An App is an assembled server, ready to serve on a listener.
type App struct {
	// Server is the API server; HTTP serves it.
	Server *server.Server
	HTTP   *http.Server
	// Log is the transparency log (nil without Options.Log).
	Log *translog.Log

	log       *slog.Logger
	push      time.Duration // how long Shutdown waits for queued pushes
	stopSweep context.CancelFunc
	closers   []func() // run by Shutdown, last first
}

// New assembles a server. ctx bounds the start only (connecting the
// PostgreSQL broadcaster); Shutdown stops what New started.
func New(ctx context.Context, o Options) (*App, error) {
	if o.Store == nil {
		return nil, errors.New("app: no store")
	}
	cfg := o.Config
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PushMetrics == nil {
		cfg.PushMetrics = push.NewMetrics()
		if cfg.Registry != nil {
			cfg.Registry.MustRegister(cfg.PushMetrics)
		}
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = server.DefaultConfig().PushTimeout
	}
	blobs := o.Blobs
	if blobs == nil {
		fs, err := blob.NewFS(o.BlobDir)
		if err != nil {
			return nil, err
		}
		blobs = fs
	}
	a := &App{log: cfg.Logger, push: cfg.PushTimeout}
	hub := push.NewLocal(push.LocalOptions{Metrics: cfg.PushMetrics})
	var local push.Notifier = hub
	var waker push.BatchNotifier = hub // both local channels send in batches too
	if o.PostgresDSN != "" {
		po := push.PGOptions{Channel: o.PushChannel, Logger: cfg.Logger, Metrics: cfg.PushMetrics}
		// The token cache is on only while the LISTEN connection hears the
		// schema's announcements of revocations (store.TokenCache).
		notified, err := o.Store.AuthNotified(ctx)
		if err != nil {
			hub.Close()
			return nil, err
		}
		if notified {
			po.Watch, po.WatchChannel = o.Store.TokenCache(), store.AuthChannel
		}
		b, err := push.NewPGBroadcaster(ctx, o.PostgresDSN, hub, po)
		if err != nil {
			hub.Close()
			return nil, err
		}
		a.closers = append(a.closers, func() { b.Close() })
		local, waker = b, b
	}
	a.Server = server.New(cfg, o.Store, blobs, push.NewMulti(local, o.FCM, cfg.PushMetrics), hub, server.WakeThrough(waker))
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	a.stopSweep = stopSweep
	if o.Sweep {
		go a.Server.RunSweeper(sweepCtx)
	}
	if o.Log != nil {
		lc := *o.Log
		if lc.Logger == nil {
			lc.Logger = cfg.Logger
		}
		lg, err := translog.New(o.Store, lc)
		if err != nil {
			stopSweep()
			hub.Close()
			return nil, err
		}
		a.Log = lg
		a.Server.MountLog(lg.Handler())
		logCtx, stopLog := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); lg.Run(logCtx) }()
		a.closers = append(a.closers, func() { stopLog(); <-done })
	}
	h := a.Server.Handler()
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	a.HTTP = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	// SSE streams never go idle: close them so Shutdown only waits for
	// real work (uploads) in flight.
	a.HTTP.RegisterOnShutdown(hub.Close)
	a.closers = append(a.closers, hub.Close)
	return a, nil
}

// Serve serves on ln, over TLS if certFile or keyFile is set, until
// Shutdown; it then returns http.ErrServerClosed.
func (a *App) Serve(ln net.Listener, certFile, keyFile string) error {
	if certFile != "" || keyFile != "" {
		return a.HTTP.ServeTLS(ln, certFile, keyFile)
	}
	return a.HTTP.Serve(ln)
}

// Shutdown stops the server gracefully: it waits for the requests in flight
// until ctx is done, then (whatever the outcome) for the pushes of the
// requests that finished meanwhile, for at most the push timeout, and
// stops the sweeper and the push channels. It returns the HTTP server's
// error. The store stays open.
func (a *App) Shutdown(ctx context.Context) error {
	err := a.HTTP.Shutdown(ctx)
	a.stopSweep()
	pctx, cancel := context.WithTimeout(context.Background(), a.push)
	defer cancel()
	if a.Server.Shutdown(pctx) != nil {
		a.log.Warn("pushes still queued at shutdown were dropped")
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	return err
}
