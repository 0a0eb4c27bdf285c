package store

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Lists are paged by keyset: a page ends with a Cursor naming its last
// row, and the next page starts after that row in the list's order
// (created_at, then id), so that a page costs the same at any depth and
// rows inserted meanwhile do not shift the pages after it.

// Cursor names the last row of a page: its creation time and id.
type Cursor struct {
	Created time.Time
	ID      string
}

// String encodes the cursor as an opaque, URL-safe token.
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.Created.UnixNano(), 10) + "." + c.ID))
}

// ErrBadCursor is returned by ParseCursor for a token it did not make.
var ErrBadCursor = errors.New("store: malformed page cursor")

// ParseCursor decodes a token made by Cursor.String.
func ParseCursor(s string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 64 {
		return nil, ErrBadCursor
	}
	ns, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || !ValidID(id) {
		return nil, ErrBadCursor
	}
	return &Cursor{Created: time.Unix(0, n).UTC(), ID: id}, nil
}

// Page selects a page of a list: at most Limit rows (0: no bound) after
// the row After names (nil: from the start).
type Page struct {
	Limit int
	After *Cursor
}

// scope bounds the query db, in order "created_at <dir>, id", to the page
// and asks for one row more than the page holds, so that the caller can
// tell whether another page follows (see cut).
func (p Page) scope(db *gorm.DB, newestFirst bool) *gorm.DB {
	// The bare bound on created_at lets the database start its index
	// scan at the cursor: with only the OR form SQLite reads the list
	// from its start and filters.
	if newestFirst {
		if p.After != nil {
			db = db.Where("created_at <= ? AND (created_at < ? OR id > ?)", p.After.Created, p.After.Created, p.After.ID)
		}
		db = db.Order("created_at DESC, id")
	} else {
		if p.After != nil {
			db = db.Where("created_at >= ? AND (created_at > ? OR id > ?)", p.After.Created, p.After.Created, p.After.ID)
		}
		db = db.Order("created_at, id")
	}
	if p.Limit > 0 {
		db = db.Limit(p.Limit + 1)
	}
	return db
}

// cut trims rows, read with scope, to the page, and returns the cursor
// of the next page (nil: this is the last page).
func cut[T any](p Page, rows []T, key func(*T) Cursor) ([]T, *Cursor) {
	if p.Limit <= 0 || len(rows) <= p.Limit {
		return rows, nil
	}
	rows = rows[:p.Limit]
	c := key(&rows[len(rows)-1])
	return rows, &c
}
