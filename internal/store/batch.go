package store

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gorm.io/gorm"
)

// A change's inserts whose results nobody reads in it (the rows of an
// upload, a grant, the audit events and log entries) wait in a Batch until
// the change's function returns, and then go to the database together: on PostgreSQL
// as one statement, each insert a data-modifying WITH clause of it
// (PostgreSQL runs every one of them exactly once, whether or not the
// final statement reads it), which is one network round trip where there
// were one per insert; on SQLite, which has no round trips, one after the
// other. A round trip was the largest cost of a small record on
// PostgreSQL (issue 11: a write and a read system call per statement, and
// a wakeup of the backend). gorm builds each insert's SQL in a dry run,
// so the columns and values are exactly those of an immediate Create.

// write is one queued statement: its SQL with ? placeholders and their
// values.
type write struct {
	sql  string
	vars []any
}

// InsertLater queues the insert of v (a row, or a slice of rows inserted
// in their order by one statement) to run when the transaction's function
// returns, with the audit events and log entries. Use it for rows that
// the rest of the transaction does not read; an error of the insert (a
// unique violation, say) is then Apply's error.
func (b *Batch) InsertLater(v any) error {
	// No default transaction: gorm would begin one on a pooled connection
	// even for a dry run.
	stmt := b.s.db.Session(&gorm.Session{DryRun: true, NewDB: true, SkipDefaultTransaction: true}).Create(v)
	if stmt.Error != nil {
		return stmt.Error
	}
	sql := returningRE.ReplaceAllString(stmt.Statement.SQL.String(), "")
	if b.s.postgres {
		// Back to gorm's own placeholders, which the statement that runs
		// the writes numbers anew. An insert lists its values in order.
		n := 0
		var err error
		sql = placeholderRE.ReplaceAllStringFunc(sql, func(p string) string {
			if n++; p != "$"+strconv.Itoa(n) {
				err = fmt.Errorf("store: queued insert: placeholder %s where $%d was due", p, n)
			}
			return "?"
		})
		if err != nil {
			return err
		}
	}
	b.writes = append(b.writes, write{sql: sql, vars: stmt.Statement.Vars})
	return nil
}

// returningRE is the RETURNING clause gorm adds to an insert for its
// autoincrement key, which no queued insert reads back.
var returningRE = regexp.MustCompile(` RETURNING [^()]*$`)

// placeholderRE is a PostgreSQL placeholder. gorm writes every value as a
// placeholder, never as a literal, so a '$' followed by digits in its SQL
// is always one.
var placeholderRE = regexp.MustCompile(`\$[0-9]+`)

// flush queues the audit events and log entries, stamped with the actor
// and the time, after the inserts, and runs them all through db.
func (b *Batch) flush(db *gorm.DB) error {
	now := b.s.Now()
	for i := range b.events {
		e := &b.events[i]
		e.Time, e.ActorKind, e.ActorID = now, b.actor.Kind, b.actor.ID
	}
	if len(b.events) > 0 {
		if err := b.InsertLater(&b.events); err != nil {
			return fmt.Errorf("store: audit: %w", err)
		}
	}
	for i := range b.logs {
		b.logs[i].Time = now
	}
	if len(b.logs) > 0 {
		// One insert: the rows' indexes follow their order.
		if err := b.InsertLater(&b.logs); err != nil {
			return fmt.Errorf("store: log: %w", err)
		}
	}
	ws := b.writes
	b.events, b.logs, b.writes = nil, nil, nil
	if !b.s.postgres {
		for _, w := range ws {
			if err := db.Exec(w.sql, w.vars...).Error; err != nil {
				return err
			}
		}
		return nil
	}
	if len(ws) == 0 {
		return nil
	}
	sql, vars := combine(ws)
	return db.Exec(sql, vars...).Error
}

// combine joins statements into one: all but the last become WITH
// clauses of the last.
func combine(ws []write) (string, []any) {
	if len(ws) == 1 {
		return ws[0].sql, ws[0].vars
	}
	var b strings.Builder
	var vars []any
	for i, w := range ws {
		vars = append(vars, w.vars...)
		switch {
		case i == 0:
			fmt.Fprintf(&b, "WITH w%d AS (%s)", i, w.sql)
		case i < len(ws)-1:
			fmt.Fprintf(&b, ", w%d AS (%s)", i, w.sql)
		default:
			b.WriteString(" ")
			b.WriteString(w.sql)
		}
	}
	return b.String(), vars
}
