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
//     with W concurrent workers: fetch the request, Check it (the user's
//     chain, served with it, then the request against the chain), Rewrap
//     the session key to the requester and sign the grant statement, POST
//     the grant. A grant's round trip runs from the party's access request to
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
// With -per-record N (and -job all or per-record), keyholderd's CPU per
// record: the server runs in a process of its own (this program with
// -serve), and N records go through their life one request kind at a
// time, driven from this process: upload, the device's fetch and
// approval, the access request, the device's fetch and grant; 200 records
// go through the same first, unmeasured, so that the server's database
// connections are open and their statements planned, as in a server that
// has been running. The server
// process's CPU time (from /proc) per request is printed next to the
// cryptography the server must do for a record (two Ed25519
// verifications and a SHA-256 of the ciphertext, timed on one thread in
// the same run), once without and once with the transparency log's
// sequencer (-per-record-log). -per-record-cpuprofile profiles the
// server process alone.
//
// The PostgreSQL run uses a fresh schema, dropped at the end; the SQLite
// run a database file in a temporary directory, removed at the end. Every
// phase is bounded by -timeout; the program stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/keyholder/keyholder/bench/internal/floor"
	"github.com/keyholder/keyholder/bench/internal/measure"
)

const defaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	dbFlag        = flag.String("db", "both", "postgres, sqlite or both (both skips PostgreSQL with a note when it is unreachable)")
	dsnFlag       = flag.String("dsn", "", "PostgreSQL DSN (default $KEYHOLDER_TEST_POSTGRES, else "+defaultDSN+")")
	grantsN       = flag.Int("grants", 3000, "grants per run (G)")
	partiesN      = flag.Int("parties", 16, "registered parties (N)")
	concurrent    = flag.Int("concurrency", 32, "parties asking concurrently (K); they take turns with the N identities")
	workersN      = flag.Int("workers", 16, "device workers answering concurrently (W)")
	recordsN      = flag.Int("records", 200, "approved records (M) the parties ask for, in turn")
	runsN         = flag.Int("runs", 2, "runs of each measurement; the best counts")
	warmupN       = flag.Int("warmup", 200, "grants before the timed runs (not counted)")
	fetch         = flag.Bool("fetch", false, "end to end: the party also fetches its grant (GET /v1/records/{id}/grant) before its round trip ends")
	serverOnly    = flag.Bool("server-only", true, "also measure the server-only ceiling (device cryptography precomputed)")
	maxConns      = flag.Int("max-open-conns", 0, "store.Options.MaxOpenConns (0: the store's default, as keyholderd runs)")
	idleConns     = flag.Int("max-idle-conns", 0, "store.Options.MaxIdleConns (0: the store's default)")
	timeout       = flag.Duration("timeout", 2*time.Minute, "bound of each phase")
	dirFlag       = flag.String("dir", "", "where the SQLite file and blobs go (default $TMPDIR)")
	profilePrefix = flag.String("cpuprofile", "", "write CPU profiles to PREFIX.<db>.e2e.pprof and PREFIX.<db>.post.pprof")
	profileFmt    = flag.String("profile", "compat", "record profile: compat or modern")
	jobFlag       = flag.String("job", "grants", "grants (end to end and server only), per-record (only the -per-record measurement), or all")
	perRecordN    = flag.Int("per-record", 0, "also measure keyholderd's CPU per record (upload, approval, access request, grant) in a server process of its own, over this many records (0: skip)")
	withLogBoth   = flag.Bool("per-record-log", true, "-per-record: run once without and once with the transparency log's sequencer")
	serveFlag     = flag.Bool("serve", false, "internal: serve keyholderd on a loopback port, print its URL, run until stdin closes")
	logFlag       = flag.Bool("log", false, "run the transparency log's sequencer in the server (the grants job; -per-record sets it itself)")
	serveProfile  = flag.String("serve-cpuprofile", "", "internal (-serve): write the server process's CPU profile here")
	serverProfile = flag.String("per-record-cpuprofile", "", "-per-record: write the server process's CPU profile of each run to PREFIX.<db>[.log].pprof")
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
	if *serveFlag {
		if err := serveChild(ctx, *dbFlag, dsn); err != nil {
			fatal(err)
		}
		return
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
		var err error
		if *jobFlag != "per-record" {
			err = runBackend(ctx, db, dsn)
		}
		if err == nil && *perRecordN > 0 {
			err = runPerRecord(ctx, db, dsn)
		}
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

// runPerRecord measures keyholderd's CPU per record on db, best of -runs,
// without and (with -per-record-log) with the log's sequencer.
func runPerRecord(ctx context.Context, db, dsn string) error {
	crypto, err := cryptoCost()
	if err != nil {
		return err
	}
	fmt.Printf("\n%s: keyholderd CPU per record, %d records, a server process of its own (load average %s)\n", db, *perRecordN, loadavg())
	logs := []bool{false}
	if *withLogBoth {
		logs = append(logs, true)
	}
	for _, withLog := range logs {
		label := "without the log's sequencer"
		suffix := ""
		if withLog {
			label, suffix = "with the log's sequencer running", ".log"
		}
		var best []phase
		for run := 1; run <= *runsN; run++ {
			prof := ""
			if *serverProfile != "" && run == 1 {
				prof = *serverProfile + "." + db + suffix + ".pprof"
			}
			phases, err := perRecord(ctx, db, dsn, *perRecordN, withLog, prof)
			if err != nil {
				var skip skipError
				if errors.As(err, &skip) {
					return err
				}
				return fmt.Errorf("per record: %w", err)
			}
			if best == nil || totalServer(phases) < totalServer(best) {
				best = phases
			}
		}
		printPerRecord(fmt.Sprintf("%s, best of %d runs:", label, *runsN), best, crypto, db == "postgres" && measure.PostgresIsLocal(dsn))
	}
	return nil
}

func totalServer(ps []phase) time.Duration {
	var t time.Duration
	for _, p := range ps {
		if p.answersPOST {
			t += p.server
		}
	}
	return t
}

// runBackend prepares one database and runs every measurement on it.
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
	// The floor on the same database kind, now (bench/internal/floor).
	floorDB := dsn
	if db != "postgres" {
		floorDB = dir
	}
	fc, err := floor.Measure(ctx, floorDB, 4000)
	if err != nil {
		return err
	}
	fmt.Printf("  floor: %s\n  floor per grant (-fetch=%v) %.3f ms: %.0f grants/s on %d cores\n", fc, *fetch, float64(fc.Grant(*fetch))/1e6,
		float64(runtime.NumCPU())*float64(time.Second)/float64(fc.Grant(*fetch)), runtime.NumCPU())
	if *warmupN > 0 {
		if _, err := endToEnd(ctx, w, *warmupN, ""); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var best result
	for run := 1; run <= *runsN; run++ {
		prof := ""
		if *profilePrefix != "" && run == 1 {
			prof = *profilePrefix + "." + db + ".e2e.pprof"
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
			if *profilePrefix != "" && run == 1 {
				prof = *profilePrefix + "." + db + ".post.pprof"
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
	fmt.Printf("  best %s: end to end %.0f grants/s (p50 %s, p99 %s; CPU %.1fx the floor's, %.0f%% of its rate)", db, best.rate(),
		ms(pct(best.lat, .5)), ms(pct(best.lat, .99)), float64(best.cpu.self+best.cpu.pg)/float64(best.n)/float64(fc.Grant(*fetch)),
		100*best.rate()*float64(fc.Grant(*fetch))/float64(time.Second)/float64(runtime.NumCPU()))
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
