// Command grants measures how many access grants per second keyholderd
// sustains, with the real server (internal/server on internal/store)
// started in this process on a loopback listener, once on PostgreSQL and
// once on SQLite. scripts/bench.sh runs it in its grants section.
//
// Preparation (untimed): one user with one enrolled device, N parties, and
// M records uploaded by the parties through pkg/client (sealed to the
// device, with private metadata) and approved by the device through the
// API, exactly as device-sim does it.
//
// Then, per database, every measurement runs -runs times (the best run
// counts; other load on the shared machine only ever slows a run down):
//
//   - end to end: K concurrent parties each ask for access to a record
//     (POST /v1/records/{id}/access) and wait for the grant; the device
//     (pkg/client, one identity) holds its event stream open and answers
//     with W concurrent workers: fetch the request, CheckRequest, Rewrap the
//     session key to the requester and sign the grant statement, POST the
//     grant. A grant's round trip runs from the party's access request to
//     the device's grant POST returning (with -fetch, to the party having
//     fetched its grant). grants/s is the count over the wall time.
//
//   - server only: the same work with the device's cryptography taken out:
//     the access requests (K parties), the device's request fetches (W
//     workers) and the grant POSTs (W workers) of G grants timed one kind at
//     a time, the grant answers (CheckRequest, Rewrap, Sign) precomputed in
//     between. Their combined rate, 1/(1/access + 1/fetch + 1/grant), is
//     the server's ceiling when the device costs nothing; the device's own
//     rate (CheckRequest + Rewrap + Sign on all CPUs) is printed next to it.
//
// CPU per grant is reported for this process (server, device and parties
// together) and, on a local PostgreSQL, for the postgres processes, so the
// reader sees where the time goes. -cpuprofile writes a CPU profile of
// each backend's first end-to-end run and first grant-POST run, with pprof
// labels side=server|device|party (go tool pprof -tagfocus side=server).
//
// The PostgreSQL run uses a fresh schema, dropped at the end; the SQLite
// run a database file in a temporary directory, removed at the end. Every
// phase is bounded by -timeout; the program stops by itself.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	dbFlag     = flag.String("db", "both", "postgres, sqlite or both (both skips PostgreSQL with a note when it is unreachable)")
	dsnFlag    = flag.String("dsn", "", "PostgreSQL DSN (default $KEYHOLDER_TEST_POSTGRES, else "+defaultDSN+")")
	grantsN    = flag.Int("grants", 3000, "grants per run (G)")
	partiesN   = flag.Int("parties", 16, "registered parties (N)")
	concurrent = flag.Int("concurrency", 32, "parties asking concurrently (K); they take turns with the N identities")
	workersN   = flag.Int("workers", 16, "device workers answering concurrently (W)")
	recordsN   = flag.Int("records", 200, "approved records (M) the parties ask for, in turn")
	runsN      = flag.Int("runs", 2, "runs of each measurement; the best counts")
	warmupN    = flag.Int("warmup", 200, "grants before the timed runs (not counted)")
	fetch      = flag.Bool("fetch", false, "end to end: the party also fetches its grant (GET /v1/records/{id}/grant) before its round trip ends")
	serverOnly = flag.Bool("server-only", true, "also measure the server-only ceiling (device cryptography precomputed)")
	maxConns   = flag.Int("max-open-conns", 0, "store.Options.MaxOpenConns (0: the store's default, as keyholderd runs)")
	idleConns  = flag.Int("max-idle-conns", 0, "store.Options.MaxIdleConns (0: the store's default)")
	timeout    = flag.Duration("timeout", 2*time.Minute, "bound of each phase")
	dirFlag    = flag.String("dir", "", "where the SQLite file and blobs go (default $TMPDIR)")
	cpuprofile = flag.String("cpuprofile", "", "write CPU profiles to PREFIX.<db>.e2e.pprof and PREFIX.<db>.post.pprof")
	profileFmt = flag.String("profile", "compat", "record profile: compat or modern")
)

func main() {
	flag.Parse()
	if *grantsN <= 0 || *partiesN <= 0 || *concurrent <= 0 || *workersN <= 0 || *recordsN <= 0 || *runsN <= 0 {
		fatal(errors.New("-grants, -parties, -concurrency, -workers, -records and -runs must be positive"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dsn := *dsnFlag
	if dsn == "" {
		dsn = os.Getenv("KEYHOLDER_TEST_POSTGRES")
	}
	if dsn == "" {
		dsn = defaultDSN
	}
	var dbs []string
	switch *dbFlag {
	case "both":
		dbs = []string{"postgres", "sqlite"}
	case "postgres", "sqlite":
		dbs = []string{*dbFlag}
	default:
		fatal(fmt.Errorf("-db must be postgres, sqlite or both"))
	}
	fmt.Printf("grants: %d CPUs, GOMAXPROCS %d, %s, load average %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), loadavg())
	fmt.Printf("  %d parties (%d asking at once), 1 device (%d workers), %d approved %s records, %d grants per run, best of %d runs\n",
		*partiesN, *concurrent, *workersN, *recordsN, *profileFmt, *grantsN, *runsN)
	failed := false
	for _, db := range dbs {
		if ctx.Err() != nil {
			break
		}
		err := runBackend(ctx, db, dsn)
		var skip skipError
		if errors.As(err, &skip) && *dbFlag == "both" {
			fmt.Printf("\n%s: skipped: %v\n", db, skip.err)
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "grants: %s: %v\n", db, err)
			failed = true
		}
	}
	if failed || ctx.Err() != nil {
		os.Exit(1)
	}
}

type skipError struct{ err error }

func (s skipError) Error() string { return s.err.Error() }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "grants:", err)
	os.Exit(1)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---------------------------------------------------------------- the server

type stack struct {
	db      string
	st      *store.Store
	srv     *server.Server
	hs      *http.Server
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
// in dir), and serves keyholderd's handler on a loopback port the way
// keyholderd serve does: PostgreSQL LISTEN/NOTIFY behind the local push
// channel on PostgreSQL, the local hub alone on SQLite.
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
		s.pgLocal = pgIsLocal(dsn)
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
	blobs, err := blob.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		s.close()
		return nil, err
	}
	pm := push.NewMetrics()
	hub := push.NewLocal(push.LocalOptions{Metrics: pm})
	var local push.Notifier = hub
	if db == "postgres" {
		b, err := push.NewPGBroadcaster(ctx, dsn, hub, push.PGOptions{Channel: "kh_bench_" + store.NewID()[:16],
			Logger: slog.New(slog.DiscardHandler), Metrics: pm})
		if err != nil {
			s.close()
			return nil, err
		}
		cleanups = append(cleanups, func() { b.Close() })
		local = b
	}
	cfg := server.DefaultConfig()
	cfg.AdminToken = adminToken
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Registry = prometheus.NewRegistry()
	cfg.PushMetrics = pm
	// The per-party rate limit on access requests (1/s, burst 20 by
	// default) protects a user's phone from one party; a throughput
	// benchmark with a few parties must lift it, as it does the others.
	cfg.AccessRate, cfg.UploadRate, cfg.AuthRate = 0, 0, 0
	s.srv = server.New(cfg, s.st, blobs, push.NewMulti(local, nil, pm), hub)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.close()
		return nil, err
	}
	s.hs = &http.Server{Handler: labeled(s.srv.Handler()), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn)}
	s.hs.RegisterOnShutdown(hub.Close)
	go s.hs.Serve(ln)
	s.url = "http://" + ln.Addr().String()
	srv, hs := s.srv, s.hs
	cleanups = append(cleanups, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		srv.Shutdown(sctx)
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

func pgIsLocal(dsn string) bool {
	for _, h := range []string{"@127.0.0.1", "@localhost", "@[::1]", "host=/"} {
		if strings.Contains(dsn, h) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- preparation

type world struct {
	s       *stack
	userID  string
	device  *client.Client
	devID   *client.Identity
	chain   *keychain.State
	parties []*client.Client
	records []string
}

func newKeyClient(url, name string) (*client.Client, *client.Identity, error) {
	k, err := envelope.GenerateKey(name)
	if err != nil {
		return nil, nil, err
	}
	id, err := client.IdentityFromKey(k)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(url, client.WithIdentity(id), client.WithUserAgent("keyholder-bench-grants"))
	return c, id, err
}

func prepare(ctx context.Context, s *stack) (*world, error) {
	w := &world{s: s}
	admin, err := client.New(s.url, client.WithAdminToken(adminToken))
	if err != nil {
		return nil, err
	}
	u, err := admin.CreateUser(ctx, "bench-"+store.NewID()[:8])
	if err != nil {
		return nil, err
	}
	w.userID = u.ID
	if w.device, w.devID, err = newKeyClient(s.url, "bench device"); err != nil {
		return nil, err
	}
	if _, err := w.device.Enroll(ctx, u.Code, "", ""); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	w.parties = make([]*client.Client, *partiesN)
	err = parallel(ctx, 8, *partiesN, func(ctx context.Context, i int) error {
		c, id, err := newKeyClient(s.url, fmt.Sprintf("bench party %d", i))
		if err != nil {
			return err
		}
		if _, err := admin.CreateParty(ctx, fmt.Sprintf("bench party %d", i), id.Key.Public().Armor()); err != nil {
			return err
		}
		w.parties[i] = c
		return c.Login(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("parties: %w", err)
	}
	if err := w.device.Login(ctx); err != nil {
		return nil, err
	}
	if w.chain, err = w.device.OwnChain(ctx); err != nil {
		return nil, err
	}
	profile, err := envelope.ParseProfile(*profileFmt)
	if err != nil {
		return nil, err
	}
	recips, err := w.parties[0].RecipientKeys(ctx, w.userID)
	if err != nil {
		return nil, err
	}
	// Uploads by the parties in turn, 1 KiB each, with a private title.
	w.records = make([]string, *recordsN)
	body := bytes.Repeat([]byte("keyholder grants benchmark record\n"), 31)[:1024]
	err = parallel(ctx, 8, *recordsN, func(ctx context.Context, i int) error {
		up, err := w.parties[i%len(w.parties)].SealAndUpload(ctx, w.userID, bytes.NewReader(body), client.UploadOptions{
			ContentType: "text/plain", Size: int64(len(body)), Purpose: "benchmark", Profile: profile,
			Private: &client.PrivateMetadata{Title: fmt.Sprintf("record %d", i)}, Recipients: recips})
		if err != nil {
			return err
		}
		w.records[i] = up.Record.ID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("uploads: %w", err)
	}
	// The device approves them all through the API.
	for {
		reqs, err := w.device.DeviceRequests(ctx)
		if err != nil {
			return nil, err
		}
		if len(reqs) == 0 {
			break
		}
		err = parallel(ctx, 8, len(reqs), func(ctx context.Context, i int) error {
			d, err := w.device.DeviceRequest(ctx, reqs[i].ID)
			if err != nil {
				return err
			}
			cr, err := client.CheckRequest(d, w.devID, w.chain)
			if err != nil {
				return err
			}
			_, err = w.device.ApproveRequest(ctx, cr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("approvals: %w", err)
		}
	}
	counts, err := s.st.RecordCounts(ctx)
	if err != nil {
		return nil, err
	}
	if counts[store.StateApproved] != int64(*recordsN) {
		return nil, fmt.Errorf("%d records approved, want %d", counts[store.StateApproved], *recordsN)
	}
	return w, nil
}

// parallel runs fn(0..n-1) on c goroutines; the first error cancels the rest.
func parallel(ctx context.Context, c, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	} else if err != nil {
		return ctx.Err()
	}
	return nil
}

// ---------------------------------------------------------------- CPU accounting

// cpu is the CPU time of this process and, for a local PostgreSQL, of its
// processes (the exited backends through the postmaster's cutime/cstime).
type cpu struct{ self, pg time.Duration }

var clkTck = 100.0 // USER_HZ; 100 on every Linux this runs on

func cpuNow(withPG bool) cpu {
	var c cpu
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if withPG {
		c.pg = postgresCPU()
	}
	return c
}

func postgresCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks float64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "postgres" {
			continue
		}
		f := strings.Fields(s[close+1:])
		// f[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseFloat(f[i], 64)
			ticks += v
		}
	}
	return time.Duration(ticks / clkTck * float64(time.Second))
}

func (a cpu) sub(b cpu) cpu { return cpu{a.self - b.self, a.pg - b.pg} }

// ---------------------------------------------------------------- end to end

type waiters struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (w *waiters) get(id string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := w.m[id]
	if ch == nil {
		ch = make(chan struct{}, 1)
		w.m[id] = ch
	}
	return ch
}

func (w *waiters) drop(id string) {
	w.mu.Lock()
	delete(w.m, id)
	w.mu.Unlock()
}

type result struct {
	n       int
	wall    time.Duration
	lat     []time.Duration
	cpu     cpu
	retries int64
}

func (r result) rate() float64 { return float64(r.n) / r.wall.Seconds() }

func pct(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

// device answers access requests from its event stream with W workers
// until ctx ends; done is told of each grant.
type device struct {
	w    *world
	wt   *waiters
	seen sync.Map
	errs atomic.Pointer[error]
	dups atomic.Int64
}

func (d *device) run(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	connected := make(chan struct{})
	var once sync.Once
	events := d.w.device.Subscribe(ctx, client.SubscribeOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		OnConnect: func() { once.Do(func() { close(connected) }) }})
	var wg sync.WaitGroup
	labels := pprof.Labels("side", "device")
	for range *workersN {
		wg.Add(1)
		go pprof.Do(ctx, labels, func(ctx context.Context) {
			defer wg.Done()
			for ev := range events {
				if _, dup := d.seen.LoadOrStore(ev.RequestID, true); dup {
					d.dups.Add(1)
					continue
				}
				if err := d.answer(ctx, ev.RequestID); err != nil && ctx.Err() == nil {
					d.errs.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
	}
	return func() { cancel(); wg.Wait() }
}

func (d *device) answer(ctx context.Context, id string) error {
	det, err := d.w.device.DeviceRequest(ctx, id)
	if err != nil {
		return fmt.Errorf("device: fetching request: %w", err)
	}
	if det.Kind != client.KindAccess || det.State != "open" {
		return nil
	}
	cr, err := client.CheckRequest(det, d.w.devID, d.w.chain)
	if err != nil {
		return fmt.Errorf("device: checking request: %w", err)
	}
	if _, err := d.w.device.GrantRequest(ctx, cr, time.Time{}); err != nil {
		if client.IsConflict(err) { // answered already (an event seen twice)
			d.dups.Add(1)
			return nil
		}
		return fmt.Errorf("device: grant: %w", err)
	}
	d.wt.get(id) <- struct{}{}
	return nil
}

// endToEnd runs n grants: K parties ask and wait, the device answers.
func endToEnd(ctx context.Context, w *world, n int, prof string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	wt := &waiters{m: map[string]chan struct{}{}}
	dev := &device{w: w, wt: wt}
	stopDev := dev.run(ctx)
	defer stopDev()
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	fail := func(err error) {
		if firstErr.CompareAndSwap(nil, &err) {
			cancel()
		}
	}
	c0, t0 := cpuNow(w.s.pgLocal), time.Now()
	var wg sync.WaitGroup
	labels := pprof.Labels("side", "party")
	for k := range *concurrent {
		wg.Add(1)
		go pprof.Do(ctx, labels, func(ctx context.Context) {
			defer wg.Done()
			party := w.parties[k%len(w.parties)]
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				rec := w.records[i%len(w.records)]
				start := time.Now()
				ar, err := party.RequestAccess(ctx, rec, "benchmark read", 3600)
				if err != nil {
					fail(fmt.Errorf("party: access request: %w", err))
					return
				}
				ch := wt.get(ar.RequestID)
				select {
				case <-ch:
				case <-ctx.Done():
					fail(fmt.Errorf("grant of request %s did not come: %w", ar.RequestID, ctx.Err()))
					return
				}
				wt.drop(ar.RequestID)
				if *fetch {
					if _, err := party.RecordGrant(ctx, rec); err != nil {
						fail(fmt.Errorf("party: fetching grant: %w", err))
						return
					}
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	r := result{n: n, wall: time.Since(t0), lat: lat, cpu: cpuNow(w.s.pgLocal).sub(c0), retries: dev.dups.Load()}
	if p := firstErr.Load(); p != nil {
		return r, *p
	}
	if p := dev.errs.Load(); p != nil {
		return r, *p
	}
	return r, ctx.Err()
}

// ---------------------------------------------------------------- server only

type answer struct {
	id            string
	kp, stmt, sig []byte
}

type serverResult struct {
	access, fetch, post, crypto result
}

// combined is the server's rate for whole grants (access + fetch + post).
func (s serverResult) combined() float64 {
	return 1 / (1/s.access.rate() + 1/s.fetch.rate() + 1/s.post.rate())
}

// timed runs fn(0..n-1) on c goroutines labeled side, timing each call.
func timed(ctx context.Context, w *world, c, n int, side string, fn func(ctx context.Context, i int) error) (result, error) {
	lat := make([]time.Duration, n)
	c0, t0 := cpuNow(w.s.pgLocal), time.Now()
	err := parallel(ctx, c, n, func(ctx context.Context, i int) error {
		var err error
		pprof.Do(ctx, pprof.Labels("side", side), func(ctx context.Context) {
			start := time.Now()
			err = fn(ctx, i)
			lat[i] = time.Since(start)
		})
		return err
	})
	return result{n: n, wall: time.Since(t0), lat: lat, cpu: cpuNow(w.s.pgLocal).sub(c0)}, err
}

func serverCeiling(ctx context.Context, w *world, n int, prof string) (serverResult, error) {
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var out serverResult
	var err error
	ids := make([]string, n)
	out.access, err = timed(ctx, w, *concurrent, n, "party", func(ctx context.Context, i int) error {
		ar, err := w.parties[i%len(w.parties)].RequestAccess(ctx, w.records[i%len(w.records)], "benchmark read", 3600)
		if err == nil {
			ids[i] = ar.RequestID
		}
		return err
	})
	if err != nil {
		return out, fmt.Errorf("access requests: %w", err)
	}
	details := make([]*api.RequestDetail, n)
	out.fetch, err = timed(ctx, w, *workersN, n, "device", func(ctx context.Context, i int) error {
		d, err := w.device.DeviceRequest(ctx, ids[i])
		details[i] = d
		return err
	})
	if err != nil {
		return out, fmt.Errorf("request fetches: %w", err)
	}
	answers := make([]answer, n)
	out.crypto, err = timed(ctx, w, runtime.GOMAXPROCS(0), n, "device", func(ctx context.Context, i int) error {
		a, err := precompute(details[i], w.devID, w.chain)
		answers[i] = a
		return err
	})
	if err != nil {
		return out, fmt.Errorf("device answers: %w", err)
	}
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return out, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return out, err
		}
		defer pprof.StopCPUProfile()
	}
	out.post, err = timed(ctx, w, *workersN, n, "device", func(ctx context.Context, i int) error {
		a := &answers[i]
		_, err := w.device.Grant(ctx, a.id, a.kp, a.stmt, a.sig)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("grant posts: %w", err)
	}
	return out, nil
}

// precompute is the device's side of client.GrantRequest without the POST.
func precompute(d *api.RequestDetail, id *client.Identity, ch *keychain.State) (answer, error) {
	cr, err := client.CheckRequest(d, id, ch)
	if err != nil {
		return answer{}, err
	}
	kp, err := envelope.Rewrap(cr.KeyPacket, cr.Profile, id.Key, cr.RequesterKey)
	if err != nil {
		return answer{}, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	g := statement.Grant{Record: d.RecordID, Grantee: d.RequesterFingerprint, KeyPacketSHA256: sha256.Sum256(kp),
		PurposeSHA256: statement.PurposeDigest(d.Purpose), Expires: d.GrantExpires.UTC().Truncate(time.Second), Request: d.ID, Time: now}
	stmt, err := g.Marshal()
	if err != nil {
		return answer{}, err
	}
	sig, err := statement.Sign(stmt, id.Key)
	if err != nil {
		return answer{}, err
	}
	return answer{id: d.ID, kp: kp, stmt: stmt, sig: sig}, nil
}

// ---------------------------------------------------------------- one backend

func cpuLine(r result, pg bool) string {
	per := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(r.n)/1e6) }
	s := "CPU/grant: keyholder " + per(r.cpu.self)
	if pg {
		s += ", postgres " + per(r.cpu.pg)
	}
	busy := float64(r.cpu.self+r.cpu.pg) / float64(r.wall) / float64(runtime.NumCPU()) * 100
	return s + fmt.Sprintf(" (CPUs %.0f%% busy)", busy)
}

func runBackend(ctx context.Context, db, dsn string) error {
	base := *dirFlag
	if base == "" {
		base = os.TempDir()
	}
	dir, err := os.MkdirTemp(base, "keyholder-bench-grants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := startStack(ctx, db, dsn, dir)
	if err != nil {
		return err
	}
	defer s.close()
	what := "SQLite (WAL, synchronous=NORMAL) in " + dir
	if db == "postgres" {
		var v string
		s.st.DB(ctx).Raw("SHOW server_version").Scan(&v)
		var sc string
		s.st.DB(ctx).Raw("SHOW synchronous_commit").Scan(&sc)
		what = "PostgreSQL " + v + " (synchronous_commit=" + sc + ") at " + redact(dsn)
	}
	fmt.Printf("\n%s: %s\n", db, what)
	t0 := time.Now()
	w, err := prepare(ctx, s)
	if err != nil {
		return fmt.Errorf("preparing: %w", err)
	}
	fmt.Printf("  prepared %d parties and %d approved records in %.1f s\n", *partiesN, *recordsN, time.Since(t0).Seconds())
	if *warmupN > 0 {
		if _, err := endToEnd(ctx, w, *warmupN, ""); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var best result
	for run := 1; run <= *runsN; run++ {
		prof := ""
		if *cpuprofile != "" && run == 1 {
			prof = *cpuprofile + "." + db + ".e2e.pprof"
		}
		load := loadavg()
		r, err := endToEnd(ctx, w, *grantsN, prof)
		if err != nil {
			return fmt.Errorf("end to end: %w", err)
		}
		fmt.Printf("  end to end   run %d: %6.0f grants/s  p50 %s  p99 %s  %s  (load before %s)\n",
			run, r.rate(), ms(pct(r.lat, .5)), ms(pct(r.lat, .99)), cpuLine(r, s.pgLocal), load)
		if r.rate() > best.rate() || best.n == 0 {
			best = r
		}
	}
	var bestS serverResult
	if *serverOnly {
		for run := 1; run <= *runsN; run++ {
			prof := ""
			if *cpuprofile != "" && run == 1 {
				prof = *cpuprofile + "." + db + ".post.pprof"
			}
			load := loadavg()
			r, err := serverCeiling(ctx, w, *grantsN, prof)
			if err != nil {
				return fmt.Errorf("server only: %w", err)
			}
			fmt.Printf("  server only  run %d: access POST %5.0f/s, device GET %5.0f/s, grant POST %5.0f/s (p50 %s p99 %s) => %4.0f grants/s; device crypto %4.0f/s (load before %s)\n",
				run, r.access.rate(), r.fetch.rate(), r.post.rate(), ms(pct(r.post.lat, .5)), ms(pct(r.post.lat, .99)),
				r.combined(), r.crypto.rate(), load)
			if bestS.access.n == 0 || r.combined() > bestS.combined() {
				bestS = r
			}
		}
	}
	fmt.Printf("  best %s: end to end %.0f grants/s (p50 %s, p99 %s)", db, best.rate(), ms(pct(best.lat, .5)), ms(pct(best.lat, .99)))
	if *serverOnly {
		perGrant := func(r result) string { return fmt.Sprintf("%.2f", float64(r.cpu.self+r.cpu.pg)/float64(r.n)/1e6) }
		fmt.Printf("; server-only ceiling %.0f grants/s (grant POST alone %.0f/s, p50 %s, p99 %s); device crypto alone %.0f grants/s\n",
			bestS.combined(), bestS.post.rate(), ms(pct(bestS.post.lat, .5)), ms(pct(bestS.post.lat, .99)), bestS.crypto.rate())
		who := "keyholder"
		if s.pgLocal {
			who += "+postgres"
		}
		fmt.Printf("  CPU ms per call (%s): access POST %s, device GET %s, grant POST %s, device crypto %s\n", who,
			perGrant(bestS.access), perGrant(bestS.fetch), perGrant(bestS.post), perGrant(bestS.crypto))
	} else {
		fmt.Println()
	}
	return nil
}
