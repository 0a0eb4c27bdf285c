package daemon

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/keyholder/keyholder/internal/app"
	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/cpuprofile"
	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/translog"
)

type serveOpts struct {
	listen, dataDir, db            string
	pushKind, fcmCreds, fcmProject string
	tlsCert, tlsKey                string
	maxRecordSize                  int64
	inlineMax                      int64
	pendingTTL, requestTTL         time.Duration
	maxGrantTTL, shutdownTimeout   time.Duration
	uploadRate, accessRate         float64
	uploadBurst, accessBurst       int
	authRate                       float64
	authBurst                      int
	maxUploadsPerParty             int
	bodyTimeout, uploadIdleTimeout time.Duration
	dbMaxConns                     int
	minFreeSpace                   int64
	logLevel                       string
	blob                           string
	logOrigin, logKey              string
	logWitnesses                   []string
	logQuorum                      int
	profiles                       []string
}

func addStoreFlags(cmd *cobra.Command, o *serveOpts) {
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "./data", "directory for the SQLite database, blobs and the admin token")
	cmd.Flags().StringVar(&o.db, "db", "", "database: a postgres:// DSN, or empty for SQLite in the data dir")
}

func serveCmd() *cobra.Command {
	o := &serveOpts{}
	d := server.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	addStoreFlags(cmd, o)
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on")
	f.StringVar(&o.pushKind, "push", "local", "push channel: local (SSE, PostgreSQL LISTEN/NOTIFY across replicas) or fcm (local + Firebase)")
	f.StringVar(&o.fcmCreds, "fcm-credentials", "", "Firebase service-account JSON file (default: application default credentials)")
	f.StringVar(&o.fcmProject, "fcm-project", "", "Firebase project id")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM)")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	f.Int64Var(&o.maxRecordSize, "max-record-size", d.MaxRecordSize, "largest accepted encrypted record, in bytes")
	f.Int64Var(&o.inlineMax, "inline-max", server.DefaultInlineMax, "largest encrypted record kept in the database instead of the blob store, in bytes (negative: none)")
	f.DurationVar(&o.pendingTTL, "pending-ttl", d.PendingTTL, "how long a record may wait for approval")
	f.DurationVar(&o.requestTTL, "request-ttl", d.RequestTTL, "how long an access request stays open")
	f.DurationVar(&o.maxGrantTTL, "max-grant-ttl", d.MaxGrantTTL, "longest grant lifetime")
	f.Float64Var(&o.uploadRate, "upload-rate", float64(d.UploadRate), "uploads per second per party (0: unlimited)")
	f.IntVar(&o.uploadBurst, "upload-burst", d.UploadBurst, "upload burst per party")
	f.Float64Var(&o.accessRate, "access-rate", float64(d.AccessRate), "access requests per second per party (0: unlimited)")
	f.IntVar(&o.accessBurst, "access-burst", d.AccessBurst, "access request burst per party")
	f.Float64Var(&o.authRate, "auth-rate", float64(d.AuthRate), "login challenge, token and enrollment requests per second per client address (0: unlimited)")
	f.IntVar(&o.authBurst, "auth-burst", d.AuthBurst, "burst of login and enrollment requests per client address")
	f.IntVar(&o.maxUploadsPerParty, "max-uploads-per-party", d.MaxUploadsPerParty, "uploads one party may have in flight at once; one more gets 429 (0: unlimited)")
	f.DurationVar(&o.bodyTimeout, "body-timeout", d.BodyTimeout, "time a client has to send a whole JSON request body (408 after it)")
	f.DurationVar(&o.uploadIdleTimeout, "upload-idle-timeout", d.UploadIdleTimeout, "time an upload may send nothing before it is aborted (408)")
	f.IntVar(&o.dbMaxConns, "db-max-conns", store.DefaultMaxOpenConns, "most database connections this process opens (0: the default); size PostgreSQL's max_connections for all replicas")
	f.Int64Var(&o.minFreeSpace, "min-free-space", server.DefaultMinFreeSpace, "free bytes the blob directory needs for /readyz to say ready")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Minute, "how long a graceful shutdown waits for in-flight requests (uploads)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logOrigin, "log-origin", "keyholder.local/log", "the transparency log's origin line, fixed for the log's life (e.g. keyholder.example.com/log)")
	f.StringVar(&o.logKey, "log-key", "", "the log's signed-note private key file, created on first start (default: log.key in the data dir; every replica needs the same file)")
	f.StringArrayVar(&o.logWitnesses, "log-witness", nil, "a tlog-witness that cosigns checkpoints, as URL=VKEY (cosignature/v1 key); repeat for more")
	f.IntVar(&o.logQuorum, "log-witness-quorum", 0, "how many witnesses must cosign a checkpoint before it is served (0: all of them)")
	f.StringVar(&o.blob, "blob", "", "where ciphertexts live: empty for the data dir, a directory, or s3://bucket/prefix?endpoint=URL&region=R&path-style=true (credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials)")
	f.StringSliceVar(&o.profiles, "profiles", []string{"compat", "modern"}, "record profiles uploads may be sealed in: compat, modern or both (others get 422 profile-not-accepted)")
	return cmd
}

// logConfig opens (or creates) the log key and parses the witnesses.
func logConfig(o *serveOpts) (*translog.Config, error) {
	signer, err := translog.LoadOrCreateKey(logKeyPath(o), o.logOrigin)
	if err != nil {
		return nil, err
	}
	lc := &translog.Config{Signer: signer, Quorum: o.logQuorum}
	for _, w := range o.logWitnesses {
		pw, err := translog.ParseWitness(w)
		if err != nil {
			return nil, err
		}
		lc.Witnesses = append(lc.Witnesses, pw)
	}
	return lc, nil
}

func logKeyPath(o *serveOpts) string {
	if o.logKey != "" {
		return o.logKey
	}
	return filepath.Join(o.dataDir, "log.key")
}

// logKeyCmd prints the log's verifier key, which clients (keyholder log
// --key, device-sim log --key) and witnesses are configured with.
func logKeyCmd() *cobra.Command {
	o := &serveOpts{}
	cmd := &cobra.Command{
		Use:   "log-key",
		Short: "Print the transparency log's verifier key (creating the key if needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			if _, err := translog.LoadOrCreateKey(logKeyPath(o), o.logOrigin); err != nil {
				return err
			}
			vkey, err := translog.VerifierKey(logKeyPath(o))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "./data", "the data directory whose log.key to read")
	cmd.Flags().StringVar(&o.logKey, "log-key", "", "the log key file (default: log.key in the data dir)")
	cmd.Flags().StringVar(&o.logOrigin, "log-origin", "keyholder.local/log", "the origin a new key is made for")
	return cmd
}

func migrateCmd() *cobra.Command {
	o := &serveOpts{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or update the database tables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			st, err := openStore(o)
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := st.MigrateReport(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Println(r)
			return nil
		},
	}
	addStoreFlags(cmd, o)
	return cmd
}

func openStore(o *serveOpts) (*store.Store, error) {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, err
	}
	dsn := o.db
	if dsn == "" {
		dsn = filepath.Join(o.dataDir, "keyholder.db")
		// Create the file owner-only before SQLite does with its default mode.
		if f, err := os.OpenFile(dsn, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			f.Close()
		}
	} else if !store.IsPostgres(dsn) {
		return nil, errors.New("--db must be a postgres:// DSN (leave it empty for SQLite)")
	}
	return store.Open(dsn, store.Options{MaxOpenConns: max(o.dbMaxConns, 0)})
}

// adminToken returns KEYHOLDER_ADMIN_TOKEN, or the token in the data dir,
// generating it (mode 0600) and printing it once on first start.
func adminToken(dataDir string) (string, error) {
	if t := os.Getenv("KEYHOLDER_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	path := filepath.Join(dataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 32)
	rand.Read(b)
	t := base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(t + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "keyholderd: generated the admin token (stored in %s, shown only this once):\n%s\n", path, t)
	return t, nil
}

func serve(ctx context.Context, o *serveOpts) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	if o.inlineMax > server.MaxInlineMax {
		return fmt.Errorf("--inline-max: at most %d bytes (an upload holds that much in memory), not %d", server.MaxInlineMax, o.inlineMax)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The address first: a busy port must fail the start before anything
	// is created (an admin token printed for a server that never ran).
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (is another keyholderd running there? choose another --listen): %w", o.listen, err)
	}
	defer ln.Close()

	st, err := openStore(o)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	tok, err := adminToken(o.dataDir)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	blobs, err := blob.Open(ctx, o.blob, filepath.Join(o.dataDir, "blobs"), o.maxRecordSize)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var fcm push.Notifier
	switch o.pushKind {
	case "local":
	case "fcm":
		f, err := push.NewFCM(ctx, push.FCMOptions{ProjectID: o.fcmProject, CredentialsFile: o.fcmCreds})
		if err != nil {
			return err
		}
		fcm = f
	default:
		return fmt.Errorf("--push must be local or fcm")
	}
	maxUploads := o.maxUploadsPerParty
	if maxUploads == 0 {
		maxUploads = -1 // the flag's 0 means unlimited; the Config's, the default
	}
	profiles, err := server.ParseProfiles(o.profiles)
	if err != nil {
		return err
	}
	cfg := server.Config{
		Profiles: profiles, AdminToken: tok, MaxRecordSize: o.maxRecordSize, InlineMax: o.inlineMax, PendingTTL: o.pendingTTL, RequestTTL: o.requestTTL,
		MaxGrantTTL: o.maxGrantTTL, UploadRate: rate.Limit(o.uploadRate), UploadBurst: o.uploadBurst,
		AccessRate: rate.Limit(o.accessRate), AccessBurst: o.accessBurst,
		AuthRate: rate.Limit(o.authRate), AuthBurst: o.authBurst, Logger: log, Registry: reg,
		MaxUploadsPerParty: maxUploads, BodyTimeout: o.bodyTimeout, UploadIdleTimeout: o.uploadIdleTimeout,
		MinFreeSpace: o.minFreeSpace,
	}
	lc, err := logConfig(o)
	if err != nil {
		return err
	}
	opts := app.Options{Config: cfg, Store: st, Blobs: blobs, FCM: fcm, Sweep: true, Log: lc}
	if store.IsPostgres(o.db) {
		opts.PostgresDSN = o.db
	}
	a, err := app.New(ctx, opts)
	if err != nil {
		return err
	}
	// For measurements: a CPU profile of the whole run, written at shutdown.
	stopProfile, err := cpuprofile.FromEnv()
	if err != nil {
		return err
	}
	defer stopProfile()
	errc := make(chan error, 1)
	go func() { errc <- a.Serve(ln, o.tlsCert, o.tlsKey) }()
	log.Info("keyholderd listening", "addr", ln.Addr().String(), "tls", o.tlsCert != "", "postgres", store.IsPostgres(o.db), "push", o.pushKind)
	select {
	case err := <-errc:
		a.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: waiting for requests in flight", "timeout", o.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
