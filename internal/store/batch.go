package store

import (
	"errors"
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
// values, and whether it must change a row (a guarded update).
type write struct {
	sql   string
	vars  []any
	guard bool
}

// ErrUnchanged is returned by Tx.Flush (and so by Apply) when a guarded
// update queued with UpdateLater found no row to change: the row is no
// longer in the state its condition asks for.
var ErrUnchanged = errors.New("store: a guarded update changed no row")

// InsertLater queues the insert of v (a row, or a slice of rows inserted
// in their order by one statement) to run when the change's function
// returns (or at Tx.Flush), with the audit events and log entries. Use it
// for rows that the rest of the change does not read; an error of the
// insert (a unique violation, say) is then Apply's error.
func (b *Batch) InsertLater(v any) error {
	return b.queue(b.dryRun().Create(v), false)
}

// UpdateLater queues a guarded update: the rows of model that where (a
// condition with ? placeholders and args) selects get values, and if
// there is none, Tx.Flush fails with ErrUnchanged. The check and the
// change are one statement, so of two changes that update the same row
// under the same condition, one wins.
func (t *Tx) UpdateLater(model any, values map[string]any, where string, args ...any) error {
	return t.queue(t.dryRun().Model(model).Where(where, args...).Updates(values), true)
}

// DeleteLater queues the deletion of the rows of model that where selects.
func (t *Tx) DeleteLater(model any, where string, args ...any) error {
	return t.queue(t.dryRun().Where(where, args...).Delete(model), false)
}

// Flush runs the writes queued so far, with the audit events and log
// entries recorded so far: on PostgreSQL one statement. A guarded update
// that changed nothing makes it fail with ErrUnchanged; the transaction
// can then still read, to say why, before fn returns the error that
// rolls it back.
func (t *Tx) Flush() error { return t.flush(t.DB) }

// dryRun is a session that builds statements without running them. It
// takes no default transaction: gorm would begin one on a pooled
// connection even for a dry run.
func (b *Batch) dryRun() *gorm.DB {
	return b.s.db.Session(&gorm.Session{DryRun: true, NewDB: true, SkipDefaultTransaction: true})
}

// queue adds the statement a dry run built.
func (b *Batch) queue(stmt *gorm.DB, guard bool) error {
	if stmt.Error != nil {
		return stmt.Error
	}
	sql := returningRE.ReplaceAllString(stmt.Statement.SQL.String(), "")
	if b.s.postgres {
		// Back to gorm's own placeholders, which the statement that runs
		// the writes numbers anew. gorm numbers them in order.
		n := 0
		var err error
		sql = placeholderRE.ReplaceAllStringFunc(sql, func(p string) string {
			if n++; p != "$"+strconv.Itoa(n) {
				err = fmt.Errorf("store: queued write: placeholder %s where $%d was due", p, n)
			}
			return "?"
		})
		if err != nil {
			return err
		}
	}
	b.writes = append(b.writes, write{sql: sql, vars: stmt.Statement.Vars, guard: guard})
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
			res := db.Exec(w.sql, w.vars...)
			if res.Error != nil {
				return res.Error
			}
			if w.guard && res.RowsAffected == 0 {
				return ErrUnchanged
			}
		}
		return nil
	}
	if len(ws) == 0 {
		return nil
	}
	sql, vars, guards := combine(ws)
	if guards == 0 {
		return db.Exec(sql, vars...).Error
	}
	counts := make([]int64, guards)
	dest := make([]any, guards)
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := db.Raw(sql, vars...).Row().Scan(dest...); err != nil {
		return err
	}
	for _, n := range counts {
		if n == 0 {
			return ErrUnchanged
		}
	}
	return nil
}

// combine joins PostgreSQL statements into one. Without guarded updates,
// all but the last become WITH clauses of the last. With them, every
// statement is a WITH clause, a guarded update RETURNING a row per row it
// changed, and the statement selects how many each changed: the guards
// run first, in their order, as the SELECT reads them; the other clauses
// after it.
func combine(ws []write) (sql string, vars []any, guards int) {
	if len(ws) == 1 && !ws[0].guard {
		return ws[0].sql, ws[0].vars, 0
	}
	var b strings.Builder
	var counts []string
	for _, w := range ws {
		if w.guard {
			guards++
		}
	}
	for i, w := range ws {
		vars = append(vars, w.vars...)
		if i == len(ws)-1 && guards == 0 {
			b.WriteString(" ")
			b.WriteString(w.sql)
			break
		}
		if i == 0 {
			b.WriteString("WITH ")
		} else {
			b.WriteString(", ")
		}
		if w.guard {
			fmt.Fprintf(&b, "w%d AS (%s RETURNING 1)", i, w.sql)
			counts = append(counts, fmt.Sprintf("(SELECT count(*) FROM w%d)", i))
		} else {
			fmt.Fprintf(&b, "w%d AS (%s)", i, w.sql)
		}
	}
	if guards > 0 {
		b.WriteString(" SELECT ")
		b.WriteString(strings.Join(counts, ", "))
	}
	return b.String(), vars, guards
}
