// Package storetest opens throw-away stores for tests: SQLite always, and
// PostgreSQL when KEYHOLDER_TEST_POSTGRES holds a DSN (each store in a fresh
// schema that is dropped at the end of the test).
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
)

// Backend names a database kind to test on.
type Backend struct {
	Name string
	DSN  string // empty: SQLite in a temporary directory
}

// Backends returns SQLite, plus PostgreSQL if KEYHOLDER_TEST_POSTGRES is set.
func Backends() []Backend {
	b := []Backend{{Name: "sqlite"}}
	if dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES"); dsn != "" {
		b = append(b, Backend{Name: "postgres", DSN: dsn})
	}
	return b
}

// Open returns a migrated, empty store on backend b, closed (and dropped)
// when the test ends.
func Open(t testing.TB, b Backend, now func() time.Time) *store.Store {
	t.Helper()
	return OpenShared(t, b, now, 1)[0]
}

// OpenShared returns n stores on one migrated, empty database (on
// PostgreSQL: one fresh schema), as n server replicas would have. On
// SQLite they share one file.
func OpenShared(t testing.TB, b Backend, now func() time.Time, n int) []*store.Store {
	t.Helper()
	return open(t, b, now, n, true)
}

// OpenEmpty returns a store on an empty database that was not migrated
// (migration tests).
func OpenEmpty(t testing.TB, b Backend) *store.Store {
	t.Helper()
	return open(t, b, nil, 1, false)[0]
}

func open(t testing.TB, b Backend, now func() time.Time, n int, migrate bool) []*store.Store {
	t.Helper()
	opts := store.Options{Now: now}
	dsn := b.DSN
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "keyholder.db")
	} else {
		opts.Schema = "kh_test_" + store.NewID()[:16]
		opts.MaxOpenConns = 8
	}
	out := make([]*store.Store, n)
	for i := range out {
		s, err := store.Open(dsn, opts)
		if err != nil {
			t.Fatalf("open %s: %v", b.Name, err)
		}
		out[i] = s
		if i == 0 {
			t.Cleanup(func() {
				if opts.Schema != "" {
					_ = s.DropSchema(opts.Schema)
				}
				s.Close()
			})
			if !migrate {
				continue
			}
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatalf("migrate %s: %v", b.Name, err)
			}
		} else {
			t.Cleanup(func() { s.Close() }) // runs before the first store's cleanup
		}
	}
	return out
}
