package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keyholder/keyholder/internal/store"
)

// TestPoolHasABound: the pool is bounded by default (32), by the option
// when it is given, and unbounded only when asked for. Before, it had no
// bound, and about 90 concurrent clients exhausted PostgreSQL's default
// max_connections.
func TestPoolHasABound(t *testing.T) {
	for _, tc := range []struct {
		opt, want int
	}{{0, store.DefaultMaxOpenConns}, {7, 7}, {-1, 0}} {
		s, err := store.Open(filepath.Join(t.TempDir(), "k.db"), store.Options{MaxOpenConns: tc.opt})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.MaxOpenConns(); got != tc.want {
			t.Errorf("MaxOpenConns %d: pool bound %d, want %d", tc.opt, got, tc.want)
		}
		s.Close()
	}
	if store.DefaultMaxOpenConns != 32 {
		t.Errorf("default pool bound %d; docs/operations.md says 32", store.DefaultMaxOpenConns)
	}
}

// TestErrorClasses: what the server turns into 503 (IsUnavailable) and
// 507 (IsFull), on errors as the drivers and the filesystem make them.
func TestErrorClasses(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, refused := store.Open("postgres://u@"+addr+"/db?sslmode=disable&connect_timeout=2", store.Options{})
	if refused == nil {
		t.Fatal("opening a database on a closed port succeeded")
	}
	s, err := store.Open(filepath.Join(t.TempDir(), "k.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	queryErr := s.DB(context.Background()).Exec("SELECT * FROM no_such_table").Error
	if queryErr == nil {
		t.Fatal("query of a missing table succeeded")
	}
	enospc := fmt.Errorf("blob: write: %w", &os.PathError{Op: "write", Path: "/data/blobs/tmp/upload-1", Err: syscall.ENOSPC})
	for _, tc := range []struct {
		name              string
		err               error
		unavailable, full bool
	}{
		{"connection refused", refused, true, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true, false},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true, false},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true, false},
		{"pg disk full", &pgconn.PgError{Code: "53100"}, false, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false, false},
		{"sqlite no such table", queryErr, false, false},
		{"enospc", enospc, false, true},
		{"edquot", &os.PathError{Op: "write", Err: syscall.EDQUOT}, false, true},
		{"plain", errors.New("boom"), false, false},
		{"connection broken mid-statement", fmt.Errorf("query: %w", io.ErrUnexpectedEOF), true, false},
		{"caller gone", fmt.Errorf("query: %w", context.Canceled), false, false},
		{"nil", nil, false, false},
	} {
		if got := store.IsUnavailable(tc.err); got != tc.unavailable {
			t.Errorf("%s: IsUnavailable = %v (%v)", tc.name, got, tc.err)
		}
		if got := store.IsFull(tc.err); got != tc.full {
			t.Errorf("%s: IsFull = %v (%v)", tc.name, got, tc.err)
		}
	}
}
