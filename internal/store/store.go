// Package store keeps Keyholder's rows (users, devices, parties, records,
// requests, grants, audit events, log entries) with gorm, on embedded SQLite
// by default or PostgreSQL in production.
//
// Every state change goes through [Store.Apply]: it opens one transaction,
// runs the caller's function, writes the rows it queued and the audit
// events and log entries it recorded, and commits; or through
// [Store.Insert], for a change made only of inserts. Writes a change does
// not read back are queued and sent together, on PostgreSQL as one
// statement (batch.go). The reads every request makes go straight through
// database/sql (direct.go); the others use [Store.DB].
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqlite "github.com/libtnb/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"
)

// ErrNotFound is returned by lookups that find no row.
var ErrNotFound = errors.New("store: not found")

var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// NewID returns a fresh id: 32 lower-case hex digits (128 random bits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidID reports whether s has the form of an id.
func ValidID(s string) bool { return idRE.MatchString(s) }

// Store is the database.
type Store struct {
	db       *gorm.DB
	postgres bool
	now      func() time.Time
	// writer admits one Apply at a time on SQLite (see Apply).
	writer chan struct{}
	// reads is db's connection pool, for the direct reads (direct.go),
	// which with the queued writes (batch.go) keep what they derive from
	// the models (see cached).
	reads      gorm.ConnPool
	schemas    sync.Map // reflect.Type → *schema.Schema
	columns    sync.Map // reflect.Type → []*schema.Field
	inserts    sync.Map // *schema.Schema → insertColumns
	statements sync.Map // key → SQL (see statement)
	// sent counts the statements the store sent to the database.
	sent atomic.Int64
	// tokens caches token owners while changes are heard (TokenCache).
	tokens *TokenCache
}

// TokenCache returns the store's cache of token owners, off until its
// LISTEN connection hears its probe (see TokenCache).
func (s *Store) TokenCache() *TokenCache { return s.tokens }

// Statements returns how many statements the store has sent to the
// database, each a round trip on PostgreSQL: every query and write, and
// the BEGIN and the COMMIT (or ROLLBACK) of every transaction.
func (s *Store) Statements() int64 { return s.sent.Load() }

// countStatements counts gorm's statements, dry runs aside.
func (s *Store) countStatements(db *gorm.DB) error {
	count := func(db *gorm.DB) {
		if !db.DryRun {
			s.sent.Add(1)
		}
	}
	cb := db.Callback()
	for _, err := range []error{
		cb.Query().After("gorm:query").Register("keyholder:count", count),
		cb.Row().After("gorm:row").Register("keyholder:count", count),
		cb.Create().After("gorm:create").Register("keyholder:count", count),
		cb.Update().After("gorm:update").Register("keyholder:count", count),
		cb.Delete().After("gorm:delete").Register("keyholder:count", count),
		cb.Raw().After("gorm:raw").Register("keyholder:count", count),
	} {
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// Options configures Open.
type Options struct {
	// Schema, for PostgreSQL, puts every table in this schema (created if
	// needed). Tests use a fresh schema per run.
	Schema string
	// Now overrides the clock (tests).
	Now func() time.Time
	// MaxOpenConns bounds the connection pool (0: DefaultMaxOpenConns;
	// negative: no bound). Requests beyond it wait for a connection.
	MaxOpenConns int
	// MaxIdleConns is how many idle connections the pool keeps for reuse
	// (0: as many as MaxOpenConns, or DefaultMaxIdleConns without a bound;
	// negative: none).
	MaxIdleConns int
}

// DefaultMaxOpenConns bounds the pool when Options set no bound: without
// one, every concurrent client held a connection of its own, and about 90
// of them exhausted PostgreSQL's default max_connections of 100.
const DefaultMaxOpenConns = 32

// DefaultMaxIdleConns is the idle pool kept when the pool has no bound.
// database/sql's own default of 2 makes every burst of concurrent requests
// open and close connections; on PostgreSQL each one is a new backend
// process, which cost more CPU than the queries themselves.
const DefaultMaxIdleConns = 32

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// SQLiteDSN returns the DSN of the SQLite database file at path, with the
// pragmas Keyholder needs (WAL, busy timeout, foreign keys, immediate
// transactions so read-then-write transactions serialize instead of failing),
// and times written as text in the one format every version has written
// ("2006-01-02 15:04:05.999999999-07:00"; TestSQLiteTimeFormat), so that
// they compare as they sort.
func SQLiteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate&_time_format=sqlite"
}

// Open connects to dsn: a postgres:// URL, or a SQLite file path (created
// with its directory). It does not migrate; call Migrate.
func Open(dsn string, opts Options) (*Store, error) {
	cfg := &gorm.Config{Logger: logger.Discard, NowFunc: func() time.Time { return time.Now().UTC() }}
	s := &Store{now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.tokens = newTokenCache(s.now)
	cfg.NowFunc = func() time.Time { return s.now().UTC() }
	var dial gorm.Dialector
	if IsPostgres(dsn) {
		s.postgres = true
		if opts.Schema != "" {
			if !regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`).MatchString(opts.Schema) {
				return nil, fmt.Errorf("store: invalid schema name %q", opts.Schema)
			}
			boot, err := gorm.Open(postgres.Open(dsn), cfg)
			if err != nil {
				return nil, fmt.Errorf("store: connecting: %w", err)
			}
			err = boot.Exec(`CREATE SCHEMA IF NOT EXISTS ` + opts.Schema).Error
			if sqlDB, e := boot.DB(); e == nil {
				sqlDB.Close()
			}
			if err != nil {
				return nil, fmt.Errorf("store: creating schema: %w", err)
			}
			u, err := url.Parse(dsn)
			if err != nil {
				return nil, fmt.Errorf("store: invalid DSN")
			}
			q := u.Query()
			q.Set("search_path", opts.Schema)
			u.RawQuery = q.Encode()
			dsn = u.String()
		}
		dial = postgres.Open(dsn)
	} else {
		if dir := filepath.Dir(dsn); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
		}
		dial = sqlite.Open(SQLiteDSN(dsn))
		s.writer = make(chan struct{}, 1)
		// The driver compiles a statement on every use unless it is
		// prepared; compiling was a fifth of the server's CPU (issue 11).
		// PostgreSQL's driver (pgx) caches its statements itself.
		cfg.PrepareStmt = true
	}
	db, err := gorm.Open(dial, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connecting: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.reads = db.ConnPool
	if s.postgres {
		// The token cache's probe goes through the store's own pool, so
		// hearing it proves the LISTEN connection hears this database. It
		// is no request's statement: Statements does not count it.
		s.tokens.probe = func(payload string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := s.reads.ExecContext(ctx, "SELECT pg_notify($1, $2)", AuthChannel, payload)
			return err
		}
	}
	maxOpen := opts.MaxOpenConns
	if maxOpen == 0 {
		maxOpen = DefaultMaxOpenConns
	}
	idle := opts.MaxIdleConns
	if idle == 0 {
		idle = DefaultMaxIdleConns
		if maxOpen > 0 {
			idle = maxOpen
		}
	}
	sqlDB.SetMaxIdleConns(idle) // before SetMaxOpenConns, which lowers it to fit
	if maxOpen > 0 {
		sqlDB.SetMaxOpenConns(maxOpen)
	}
	if err := s.countStatements(db); err != nil {
		return nil, err
	}
	s.db = db
	return s, nil
}

// DropSchema removes a PostgreSQL schema and everything in it (tests).
func (s *Store) DropSchema(schema string) error {
	if !s.postgres {
		return nil
	}
	return s.db.Exec(`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`).Error
}

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping checks that the database answers a statement.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.db.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error
}

// MaxOpenConns returns the bound of the connection pool (0: none).
func (s *Store) MaxOpenConns() int {
	sqlDB, err := s.db.DB()
	if err != nil {
		return 0
	}
	return sqlDB.Stats().MaxOpenConnections
}

// Postgres reports whether the store runs on PostgreSQL.
func (s *Store) Postgres() bool { return s.postgres }

// DB returns a session for reads.
func (s *Store) DB(ctx context.Context) *gorm.DB { return s.db.WithContext(ctx) }

// Now returns the store's clock.
func (s *Store) Now() time.Time { return s.now().UTC() }

// Actor is who causes a state change.
type Actor struct {
	Kind string // ActorAdmin, ActorDevice, ActorParty, ActorSystem, ActorAnon
	ID   string
}

// Batch is the part of a state change that only adds rows: inserts
// queued with InsertLater, audit events, log entries, and what runs after
// the commit. Store.Insert runs a Batch alone; a Tx has one.
type Batch struct {
	s      *Store
	actor  Actor
	events []AuditEvent
	logs   []LogEntry
	writes []write
	after  []func()
	// whole: the writes are one autocommit statement (Store.Change), which
	// fails as a whole when a guard changes nothing.
	whole bool
}

// Tx is a state change in progress.
type Tx struct {
	// DB is the transaction. Write only through it.
	DB *gorm.DB
	*Batch
}

// Audit records an audit event for the change (actor and time are filled in).
func (b *Batch) Audit(action, objectKind, objectID string) {
	b.events = append(b.events, AuditEvent{Action: action, ObjectKind: objectKind, ObjectID: objectID})
}

// AppendLog records a transparency log leaf (kind is one of the Log* kinds;
// leaf is the canonical statement or binding text).
func (b *Batch) AppendLog(kind string, leaf []byte) {
	b.logs = append(b.logs, LogEntry{Kind: kind, Leaf: append([]byte(nil), leaf...)})
}

// AfterCommit runs fn once the change has committed (never if it fails).
// Use it for side effects outside the database: deleting blobs, pushes.
func (b *Batch) AfterCommit(fn func()) { b.after = append(b.after, fn) }

// Now is the change's clock.
func (b *Batch) Now() time.Time { return b.s.Now() }

// Locked returns the transaction scoped to lock the rows it selects
// (SELECT ... FOR UPDATE) on PostgreSQL. On SQLite the transaction already
// holds the write lock (_txlock=immediate), so it is the plain transaction.
func (t *Tx) Locked() *gorm.DB {
	if t.whole {
		panic("store: Locked needs a transaction (Apply, not Change)") // a programming error
	}
	if t.s.postgres {
		return t.DB.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	return t.DB
}

// LockKey serializes the transactions that lock the same key until they
// end: on PostgreSQL a transaction-scoped advisory lock
// (pg_advisory_xact_lock), which holds across replicas; on SQLite nothing
// is needed, as every transaction already holds the database's write lock
// (_txlock=immediate). The server locks "blob:<sha256>" around committing
// and deleting a ciphertext, so a blob is never deleted while a record that
// refers to it commits.
func (t *Tx) LockKey(key string) error {
	if !t.s.postgres {
		return nil
	}
	if t.whole {
		return errors.New("store: LockKey needs a transaction (Apply, not Change)")
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return t.DB.Exec("SELECT pg_advisory_xact_lock(?)", int64(h.Sum64())).Error
}

// Apply runs fn in one transaction and, with it, writes the rows fn
// queued, the audit events and the log entries it recorded. If fn returns
// an error nothing is written and that error is returned unchanged. Apply
// and Insert are the only paths that write.
func (s *Store) Apply(ctx context.Context, actor Actor, fn func(tx *Tx) error) error {
	return s.apply(ctx, &Batch{s: s, actor: actor}, fn)
}

// Insert is Apply for a change made only of inserts: fn queues them (and
// audit events, log entries) on b, and Insert writes them all or none. On
// PostgreSQL they are one statement, which is atomic by itself: one round
// trip, without a BEGIN and a COMMIT of their own.
func (s *Store) Insert(ctx context.Context, actor Actor, fn func(b *Batch) error) error {
	b := &Batch{s: s, actor: actor}
	if err := fn(b); err != nil {
		return err
	}
	if !s.postgres {
		return s.apply(ctx, b, func(*Tx) error { return nil })
	}
	if err := b.flush(s.db.WithContext(ctx)); err != nil {
		return err
	}
	b.runAfter()
	return nil
}

// Change is Apply for a change that needs no transaction around its
// reads: fn reads (unlocked), queues guarded updates, inserts, deletions,
// audit events and log entries, and ends with Flush (reading after a
// failed Flush, to say why, is fine). On PostgreSQL the writes are one
// statement that fails as a whole, with ErrUnchanged, when a guard
// changes nothing: one round trip, without a BEGIN and a COMMIT of its
// own. fn must not lock (Locked, LockKey) nor write after its Flush. On
// SQLite, Change is Apply.
func (s *Store) Change(ctx context.Context, actor Actor, fn func(tx *Tx) error) error {
	if !s.postgres {
		return s.Apply(ctx, actor, fn)
	}
	b := &Batch{s: s, actor: actor, whole: true}
	t := &Tx{DB: s.db.WithContext(ctx), Batch: b}
	if err := fn(t); err != nil {
		return err
	}
	if err := b.flush(t.DB); err != nil {
		return err
	}
	b.runAfter()
	return nil
}

func (s *Store) apply(ctx context.Context, b *Batch, fn func(tx *Tx) error) error {
	release, err := s.admitWriter(ctx)
	if err != nil {
		return err
	}
	s.sent.Add(2) // BEGIN, and COMMIT or ROLLBACK
	err = s.db.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		t := &Tx{DB: db, Batch: b}
		if err := fn(t); err != nil {
			return err
		}
		return b.flush(db)
	})
	release()
	if err != nil {
		return err
	}
	b.runAfter()
	return nil
}

// runAfter runs the after-commit hooks; a panic in one is logged.
func (b *Batch) runAfter() {
	for _, fn := range b.after {
		func() {
			defer func() {
				if r := recover(); r != nil {
					slog.Error("after-commit hook panicked", "panic", fmt.Sprint(r))
				}
			}()
			fn()
		}()
	}
}

// writerWait bounds how long Apply waits for its turn on SQLite; then it
// goes ahead and leaves the waiting to SQLite's busy timeout, as before.
const writerWait = 10 * time.Second

// admitWriter waits for this process's turn to write on SQLite, where
// every transaction takes the database's write lock at BEGIN
// (_txlock=immediate): concurrent writers otherwise wait in SQLite's busy
// handler, which polls with sleeps of up to 100 ms, so that under load
// some transactions waited half a second for a lock held a millisecond at
// a time. Queueing here hands the lock over at once. Other processes on
// the same file still meet the busy timeout. On PostgreSQL it does nothing.
func (s *Store) admitWriter(ctx context.Context) (release func(), err error) {
	if s.writer == nil {
		return func() {}, nil
	}
	timer := time.NewTimer(writerWait)
	defer timer.Stop()
	select {
	case s.writer <- struct{}{}:
		return func() { <-s.writer }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-timer.C:
		return func() {}, nil
	}
}

// IsUniqueViolation reports whether err is a unique constraint violation.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "duplicate key value")
}

// First loads the row of model type with the given primary key into dst;
// ErrNotFound if there is none.
func First(db *gorm.DB, dst any, where string, args ...any) error {
	err := db.Where(where, args...).Take(dst).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	return err
}

// keyed is the condition of a statement that changes or locks the one
// row with primary key id (its first argument) if guard holds for it:
// "id = ? AND (guard) IS TRUE". Wrapped in IS TRUE, guard is no index
// condition, so the planner cannot prefer an index on its columns to the
// primary key. PostgreSQL did, for a table without statistics or with
// stale ones (a burst of pending records after the last ANALYZE): it took
// "state = 'pending'" to match one row and read every pending record on
// each approval (issue 11).
func keyed(guard string) string { return "id = ? AND (" + guard + ") IS TRUE" }

// PendingRecords counts the records waiting for approval. It reads the
// sweeper's index of their expiry (idx_records_pending_expiry), which
// holds the pending records alone: the count costs as much as there are
// pending records, which expire, not as much as the records ever stored.
func (s *Store) PendingRecords(ctx context.Context) (int64, error) {
	var n int64
	err := s.DB(ctx).Raw(pendingCount, time.Time{}).Scan(&n).Error
	return n, err
}

// Counts returns the number of rows of every table (tests compare them
// before and after a refused request).
func (s *Store) Counts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, m := range allModels() {
		var n int64
		stmt := &gorm.Statement{DB: s.db}
		if err := stmt.Parse(m); err != nil {
			return nil, err
		}
		if err := s.DB(ctx).Model(m).Count(&n).Error; err != nil {
			return nil, err
		}
		out[stmt.Schema.Table] = n
	}
	return out, nil
}
