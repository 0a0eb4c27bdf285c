// Command history checks that no request's cost grows with a user's or a
// party's history: it runs the same requests against keyholderd holding
// a small and a large history (-sizes, default 100 and 100,000 records,
// each with its approval request and a grant, and as many users and
// parties besides, and after PostgreSQL's statistics are taken, as many
// pending records of those users with their open requests), and prints
// their latencies side by side, with the ratio large/small (flat is 1.0).
// scripts/bench.sh runs it in its history section.
//
// The server is the real one (internal/app on internal/store), started in
// this process on a loopback port. The user, its device and the party are
// made through the API; the history is written straight into the database
// (untimed), since uploading 100,000 records through the API would take
// longer than the measurement. Every request is timed through pkg/client,
// sequentially, after a warm-up; p50 and p99 of -n requests are printed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyholder/keyholder/internal/app"
	"github.com/keyholder/keyholder/internal/server"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

const adminToken = "bench-admin-token-0123456789abcdef"

var (
	dbFlag   = flag.String("db", "both", "postgres, sqlite or both (both skips PostgreSQL with a note when it is unreachable)")
	dsnFlag  = flag.String("dsn", "", "PostgreSQL DSN (default $KEYHOLDER_TEST_POSTGRES, else postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	sizes    = flag.String("sizes", "100,100000", "history sizes to compare (records of the user and of the party; as many users and parties)")
	requests = flag.Int("n", 200, "timed requests per route and size")
	pageSize = flag.Int("page", 50, "limit of the paged requests")
	dirFlag  = flag.String("dir", "", "where the SQLite file goes (default $TMPDIR)")
)

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			fatal(fmt.Errorf("-sizes: %q is not a size of at least 2", f))
		}
		ns = append(ns, n)
	}
	if *requests < 1 || *pageSize < 1 || *pageSize > api.MaxPageSize {
		fatal(errors.New("-n must be positive and -page from 1 to 1000"))
	}
	dsn := *dsnFlag
	if dsn == "" {
		dsn = os.Getenv("KEYHOLDER_TEST_POSTGRES")
	}
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	dbs := []string{*dbFlag}
	if *dbFlag == "both" {
		dbs = []string{"sqlite", "postgres"}
	}
	fmt.Printf("history: %d CPUs, %s, %d requests per route, pages of %d, load average %s\n",
		runtime.NumCPU(), runtime.Version(), *requests, *pageSize, loadavg())
	for _, db := range dbs {
		var results []map[string][]time.Duration
		for _, n := range ns {
			r, err := measure(ctx, db, dsn, n)
			var skip skipError
			if errors.As(err, &skip) && *dbFlag == "both" {
				fmt.Printf("\n%s: skipped: %v\n", db, skip.err)
				results = nil
				break
			}
			if err != nil {
				fatal(fmt.Errorf("%s at %d records: %w", db, n, err))
			}
			results = append(results, r)
		}
		if results != nil {
			report(db, ns, results)
		}
	}
}

// route is one request the bench times: do, whole, or the part of it
// timed returns (for a request that needs untimed steps before it).
type route struct {
	name  string
	do    func(ctx context.Context) error
	timed func(ctx context.Context) (time.Duration, error)
}

func measure(ctx context.Context, db, dsn string, n int) (map[string][]time.Duration, error) {
	dir, err := os.MkdirTemp(*dirFlag, "keyholder-bench-history-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, url, closeStack, err := startStack(ctx, db, dsn, dir)
	if err != nil {
		return nil, err
	}
	defer closeStack()
	w, err := populate(ctx, st, url, n)
	if err != nil {
		return nil, err
	}
	fmt.Printf("  %s, %d records: history written in %s (load average %s)\n", db, n, w.took.Round(time.Millisecond), loadavg())
	page := api.Page{Limit: *pageSize}
	deep := api.Page{Limit: *pageSize, Cursor: w.middle.String()}
	deepParty := api.Page{Limit: *pageSize, Cursor: w.middleParty.String()}
	routes := []route{
		{"device: open requests (1 open)", func(ctx context.Context) error {
			rs, _, err := w.device.DeviceRequestsPage(ctx, api.Page{})
			return want(len(rs), 1, err)
		}, nil},
		{"baseline: old open-request SQL", func(ctx context.Context) error {
			// The query this bench guards against, straight on the store:
			// record_id IN (every record the device ever had a packet of).
			var rs []store.Request
			err := st.DB(ctx).Where("user_id = ? AND state = ? AND expires_at > ?", w.userID, store.RequestOpen, time.Now().UTC()).
				Where("kind = ? OR record_id IN (SELECT record_id FROM record_key_packets WHERE device_id = ?)", store.KindDevice, w.deviceID).
				Order("created_at, id").Limit(api.DefaultPageSize).Find(&rs).Error
			return want(len(rs), 1, err)
		}, nil},
		{"device: event stream replay", func(ctx context.Context) error {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			select {
			case ev, ok := <-w.device.Subscribe(cctx, client.SubscribeOptions{}):
				if !ok {
					return errors.New("the event stream ended before its replay")
				}
				if ev.RequestID != w.openRequest {
					return fmt.Errorf("replayed %s, want %s", ev.RequestID, w.openRequest)
				}
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("no replay within 10s")
			}
		}, nil},
		{"device: records, first page", func(ctx context.Context) error {
			rs, _, err := w.device.DeviceRecordsPage(ctx, page)
			return want(len(rs), min(*pageSize, n+1), err)
		}, nil},
		{"device: records, middle page", func(ctx context.Context) error {
			rs, _, err := w.device.DeviceRecordsPage(ctx, deep)
			return want(len(rs), min(*pageSize, n/2), err)
		}, nil},
		{"device: grants, first page", func(ctx context.Context) error {
			gs, _, err := w.device.DeviceGrantsPage(ctx, page)
			return want(len(gs), min(*pageSize, n), err)
		}, nil},
		{"party: records, first page", func(ctx context.Context) error {
			rs, _, err := w.party.PartyRecordsPage(ctx, page)
			return want(len(rs), min(*pageSize, n+1), err)
		}, nil},
		{"party: grants, first page", func(ctx context.Context) error {
			gs, _, err := w.party.PartyGrantsPage(ctx, page)
			return want(len(gs), min(*pageSize, n), err)
		}, nil},
		{"admin: users, first page", func(ctx context.Context) error {
			us, _, err := w.admin.ListUsersPage(ctx, page)
			return want(len(us), min(*pageSize, n+1), err)
		}, nil},
		{"admin: parties, middle page", func(ctx context.Context) error {
			ps, _, err := w.admin.ListPartiesPage(ctx, deepParty)
			return want(len(ps), min(*pageSize, n/2), err)
		}, nil},
		{name: "device: approval (n pending)", timed: func(ctx context.Context) (time.Duration, error) {
			return w.approve(ctx)
		}},
	}
	out := map[string][]time.Duration{}
	for _, r := range routes {
		timed := r.timed
		if timed == nil {
			timed = func(ctx context.Context) (time.Duration, error) {
				t0 := time.Now()
				err := r.do(ctx)
				return time.Since(t0), err
			}
		}
		for range 10 { // warm-up: connections, tokens, caches
			if _, err := timed(ctx); err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
		}
		ds := make([]time.Duration, 0, *requests)
		for range *requests {
			d, err := timed(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.name, err)
			}
			ds = append(ds, d)
		}
		slices.Sort(ds)
		out[r.name] = ds
		order = appendOnce(order, r.name)
	}
	return out, nil
}

var order []string

func appendOnce(xs []string, x string) []string {
	if slices.Contains(xs, x) {
		return xs
	}
	return append(xs, x)
}

func want(got, n int, err error) error {
	if err == nil && got != n {
		err = fmt.Errorf("%d rows, want %d", got, n)
	}
	return err
}

func report(db string, ns []int, results []map[string][]time.Duration) {
	fmt.Printf("\n%s (load average %s)\n", db, loadavg())
	fmt.Printf("%-32s", "ms, p50 / p99")
	for _, n := range ns {
		fmt.Printf(" %17s", fmt.Sprintf("%d records", n))
	}
	fmt.Printf(" %14s\n", "ratio p50")
	for _, name := range order {
		fmt.Printf("%-32s", name)
		for _, r := range results {
			ds := r[name]
			fmt.Printf(" %8.2f / %6.2f", ms(quantile(ds, 0.5)), ms(quantile(ds, 0.99)))
		}
		first, last := results[0][name], results[len(results)-1][name]
		fmt.Printf(" %14.2f\n", ms(quantile(last, 0.5))/ms(quantile(first, 0.5)))
	}
	fmt.Println("(ratio: p50 at the largest history over p50 at the smallest; flat is 1.00)")
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// --- The server and its history ---

type skipError struct{ err error }

func (e skipError) Error() string { return e.err.Error() }

// startStack serves keyholderd on a loopback port on a fresh PostgreSQL
// schema (dropped by the returned close) or a SQLite file in dir.
func startStack(ctx context.Context, db, dsn, dir string) (*store.Store, string, func(), error) {
	var st *store.Store
	var err error
	var drop func()
	if db == "postgres" {
		schema := "kh_bench_" + store.NewID()[:16]
		st, err = store.Open(dsn, store.Options{Schema: schema})
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = st.Ping(pctx)
			cancel()
			if err != nil {
				st.Close()
			}
		}
		if err != nil {
			return nil, "", nil, skipError{fmt.Errorf("PostgreSQL unreachable: %v", err)}
		}
		drop = func() {
			if err := st.DropSchema(schema); err != nil {
				fmt.Fprintf(os.Stderr, "history: dropping schema %s: %v\n", schema, err)
			}
			st.Close()
		}
	} else {
		if st, err = store.Open(filepath.Join(dir, "keyholder.db"), store.Options{}); err != nil {
			return nil, "", nil, err
		}
		drop = func() { st.Close() }
	}
	if err := st.Migrate(ctx); err != nil {
		drop()
		return nil, "", nil, err
	}
	cfg := server.DefaultConfig()
	cfg.AdminToken = adminToken
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Registry = prometheus.NewRegistry()
	cfg.AccessRate, cfg.UploadRate, cfg.AuthRate = 0, 0, 0
	a, err := app.New(ctx, app.Options{Config: cfg, Store: st, BlobDir: filepath.Join(dir, "blobs")})
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Shutdown(ctx)
		drop()
		return nil, "", nil, err
	}
	go a.Serve(ln, "", "")
	return st, "http://" + ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(sctx)
		drop()
	}, nil
}

type world struct {
	admin, device, party *client.Client
	openRequest          string
	userID, deviceID     string
	middle, middleParty  store.Cursor
	took                 time.Duration
}

// approve uploads a record as the party and has the device check it
// (untimed), then times the device's approval: the guarded update of a
// record among n pending ones that the planner's statistics do not know
// of, which PostgreSQL once planned on an index of pending records.
func (w *world) approve(ctx context.Context) (time.Duration, error) {
	up, err := w.party.SealAndUpload(ctx, w.userID, strings.NewReader("a record to approve"), client.UploadOptions{})
	if err != nil {
		return 0, err
	}
	var reqID string
	for page := (api.Page{}); reqID == ""; {
		rs, next, err := w.device.DeviceRequestsPage(ctx, page)
		if err != nil {
			return 0, err
		}
		for _, r := range rs {
			if r.RecordID == up.Record.ID {
				reqID = r.ID
			}
		}
		if next == "" {
			break
		}
		page.Cursor = next
	}
	if reqID == "" {
		return 0, fmt.Errorf("no open request for record %s", up.Record.ID)
	}
	d, err := w.device.DeviceRequest(ctx, reqID)
	if err != nil {
		return 0, err
	}
	cr, err := w.device.Check(ctx, d)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	_, err = w.device.ApproveRequest(ctx, cr)
	return time.Since(t0), err
}

func keyClient(url, name string) (*client.Client, *envelope.Key, error) {
	k, err := envelope.GenerateKey(name)
	if err != nil {
		return nil, nil, err
	}
	id, err := client.IdentityFromKey(k)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.New(url, client.WithIdentity(id), client.WithUserAgent("keyholder-bench-history"))
	return c, k, err
}

// populate makes the user (with its device) and the party through the
// API, then writes n records of the user from the party, each approved by
// the device with its answered approval request and a grant to the party,
// n other users and n other parties, and one pending record with an open
// request for the device.
func populate(ctx context.Context, st *store.Store, url string, n int) (*world, error) {
	w := &world{}
	var err error
	if w.admin, err = client.New(url, client.WithAdminToken(adminToken)); err != nil {
		return nil, err
	}
	u, err := w.admin.CreateUser(ctx, "bench-user")
	if err != nil {
		return nil, err
	}
	var devKey, partyKey *envelope.Key
	if w.device, devKey, err = keyClient(url, "bench device"); err != nil {
		return nil, err
	}
	enrolled, err := w.device.Enroll(ctx, u.Code, "", "")
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if w.party, partyKey, err = keyClient(url, "bench party"); err != nil {
		return nil, err
	}
	p, err := w.admin.CreateParty(ctx, "bench party", partyKey.Public().Armor())
	if err != nil {
		return nil, err
	}
	devID, fpr := enrolled.DeviceID, devKey.Fingerprint()
	w.userID, w.deviceID = u.ID, devID

	t0 := time.Now()
	base := t0.Add(-time.Duration(n+10) * time.Second).UTC().Truncate(time.Microsecond)
	const batch = 2000
	db := st.DB(ctx)
	others := make([]struct{ user, party string }, 0, n) // the other users and parties
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		var (
			recs    []store.Record
			kps     []store.RecordKeyPacket
			reqs    []store.Request
			grants  []store.Grant
			users   []store.User
			parties []store.Party
		)
		for i := start; i < end; i++ {
			at := base.Add(time.Duration(i) * time.Second)
			decided := at.Add(time.Millisecond)
			id, hex := store.NewID(), store.NewID()+store.NewID()
			recs = append(recs, store.Record{ID: id, UserID: u.ID, PartyID: p.ID, State: store.StateApproved, Profile: "compat",
				CiphertextSHA256: hex, Size: 100, Metadata: []byte(`{}`), MetadataSHA256: hex, KeyPacketsSHA256: hex,
				DecidedBy: devID, DecidedAt: &decided, CreatedAt: at, ExpiresAt: at.Add(time.Hour)})
			kps = append(kps, store.RecordKeyPacket{RecordID: id, DeviceID: devID, Fingerprint: fpr, Packet: []byte{1}})
			reqs = append(reqs, store.Request{ID: store.NewID(), Kind: store.KindApproval, RecordID: id, UserID: u.ID, PartyID: p.ID,
				State: store.RequestAnswered, Answer: store.AnswerApproved, AnsweredBy: devID, CreatedAt: at, ExpiresAt: at.Add(time.Hour), AnsweredAt: &decided})
			grants = append(grants, store.Grant{ID: store.NewID(), RecordID: id, PartyID: p.ID, UserID: u.ID, RequestID: store.NewID(),
				DeviceID: devID, KeyPacket: []byte{1}, Statement: []byte("s"), Signature: []byte("s"), CreatedAt: at, ExpiresAt: at.Add(time.Hour)})
			users = append(users, store.User{ID: store.NewID(), Handle: fmt.Sprintf("user-%d", i), CreatedAt: at})

			parties = append(parties, store.Party{ID: store.NewID(), Name: "p", Fingerprint: fmt.Sprintf("FP%062d", i), PublicKey: []byte("k"), CreatedAt: at})
			others = append(others, struct{ user, party string }{users[len(users)-1].ID, parties[len(parties)-1].ID})
			if i == n/2 {
				// The newest-first record list's and the oldest-first
				// party list's middle pages start after these rows.
				w.middle = store.Cursor{Created: at, ID: id}
				w.middleParty = store.Cursor{Created: at, ID: parties[len(parties)-1].ID}
			}
		}
		for _, rows := range []any{recs, kps, reqs, grants, users, parties} {
			if err := db.CreateInBatches(rows, 200).Error; err != nil {
				return nil, err
			}
		}
	}
	// One pending record with an open approval request for the device.
	now := time.Now().UTC()
	id, hex := store.NewID(), store.NewID()+store.NewID()
	w.openRequest = store.NewID()
	for _, row := range []any{
		&store.Record{ID: id, UserID: u.ID, PartyID: p.ID, State: store.StatePending, Profile: "compat", CiphertextSHA256: hex,
			Metadata: []byte(`{}`), MetadataSHA256: hex, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)},
		&store.RecordKeyPacket{RecordID: id, DeviceID: devID, Fingerprint: fpr, Packet: []byte{1}},
		&store.Request{ID: w.openRequest, Kind: store.KindApproval, RecordID: id, UserID: u.ID, PartyID: p.ID,
			State: store.RequestOpen, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)},
	} {
		if err := db.Create(row).Error; err != nil {
			return nil, err
		}
	}
	if st.Postgres() {
		// Statistics for the planner, as autovacuum would have them
		// (SQLite has none unless asked, so it is left without).
		if err := db.Exec("ANALYZE").Error; err != nil {
			return nil, err
		}
	}
	// Then a burst the statistics do not know of: n pending records of
	// the other users from the other parties, each with its open approval
	// request.
	for start := 0; start < n; start += batch {
		var (
			recs []store.Record
			reqs []store.Request
		)
		for i := start; i < min(start+batch, n); i++ {
			id, hex := store.NewID(), store.NewID()+store.NewID()
			recs = append(recs, store.Record{ID: id, UserID: others[i].user, PartyID: others[i].party, State: store.StatePending, Profile: "compat",
				CiphertextSHA256: hex, Metadata: []byte(`{}`), MetadataSHA256: hex, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
			reqs = append(reqs, store.Request{ID: store.NewID(), Kind: store.KindApproval, RecordID: id, UserID: others[i].user, PartyID: others[i].party,
				State: store.RequestOpen, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
		}
		for _, rows := range []any{recs, reqs} {
			if err := db.CreateInBatches(rows, 200).Error; err != nil {
				return nil, err
			}
		}
	}
	w.took = time.Since(t0)
	if err := w.device.Login(ctx); err != nil {
		return nil, err
	}
	return w, w.party.Login(ctx)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "history: %v\n", err)
	os.Exit(1)
}
