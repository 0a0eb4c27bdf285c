package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLite result codes (the low byte of the driver's Code()).
const (
	sqliteBusy   = 5
	sqliteLocked = 6
	sqliteFull   = 13
)

// sqliteCode returns the primary SQLite result code in err's chain, or 0.
func sqliteCode(err error) int {
	var c interface{ Code() int }
	if errors.As(err, &c) {
		return c.Code() & 0xff
	}
	return 0
}

// IsUnavailable reports whether err says that the database cannot serve
// right now, as opposed to refusing what it was asked: it cannot be
// reached (connection refused, reset, timed out), it is shutting down or
// starting up, it has no connection slot left, or (SQLite) another writer
// held the lock past the busy timeout. Such an error goes away by itself or
// by an operator's hand; the same call made later may succeed.
func IsUnavailable(err error) bool {
	// A caller that went away is not the database's fault.
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", // admin shutdown, crash shutdown, cannot connect now
			"53300", "53400": // too many connections, configuration limit exceeded
			return true
		}
		return strings.HasPrefix(pe.Code, "08") // connection exception
	}
	if pgconn.Timeout(err) {
		return true
	}
	switch sqliteCode(err) {
	case sqliteBusy, sqliteLocked:
		return true
	}
	// A connection that broke in the middle of a statement ends in an
	// unexpected EOF. Not net.Error: a syscall.Errno satisfies it too,
	// ENOSPC included.
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT)
}

// IsFull reports whether err says that there is no room to write: a full
// filesystem or quota (ENOSPC, EDQUOT, for the blobs or an SQLite file),
// SQLite's SQLITE_FULL, or PostgreSQL's disk_full.
func IsFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "53100"
	}
	return sqliteCode(err) == sqliteFull
}

// isDivisionByZero reports PostgreSQL's division_by_zero (22012): how a
// Change's statement fails when a guard changed nothing.
func isDivisionByZero(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "22012"
}
