package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// A change's writes whose results nobody reads in it (the rows of an
// upload, a grant, the audit events and log entries, and the guarded
// updates of an answer) wait in a Batch until the change's function
// returns (or Tx.Flush), and then go to the database together: on
// PostgreSQL as one statement, each write a data-modifying WITH clause of
// it (PostgreSQL runs every one of them exactly once, whether or not the
// final statement reads it), which is one network round trip where there
// were one per write; on SQLite, which has no round trips, one after the
// other. A round trip was the largest cost of a small record on
// PostgreSQL (issue 11: a write and a read system call per statement, and
// a wakeup of the backend).
//
// The statements are built here from the models' gorm schemas, with
// gorm's rules for an insert (a zero autoincrement key is left to the
// database, a zero creation time is now, a zero field with a default
// takes the default): gorm's own dry run cost more than the statement.

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

// InsertLater queues the insert of v (a pointer to a row, or to a slice of
// rows inserted in their order by one statement) to run when the change's
// function returns (or at Tx.Flush), with the audit events and log
// entries. Use it for rows that the rest of the change does not read; an
// error of the insert (a unique violation, say) is then Apply's error.
// Like gorm's Create, it fills in a zero creation time.
func (b *Batch) InsertLater(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("store: InsertLater needs a pointer, not %T", v)
	}
	rv = rv.Elem()
	rows := []reflect.Value{rv}
	if rv.Kind() == reflect.Slice {
		if rv.Len() == 0 {
			return gorm.ErrEmptySlice
		}
		rows = make([]reflect.Value, rv.Len())
		for i := range rows {
			rows[i] = rv.Index(i)
		}
	}
	if rows[0].Kind() != reflect.Struct {
		return fmt.Errorf("store: InsertLater needs rows, not %T", v)
	}
	sch := b.s.schemaOf(reflect.New(rows[0].Type()).Interface())
	ic := cached(&b.s.inserts, sch, func() insertColumns { return insertColumnsOf(sch) })
	if ic.err != nil {
		return ic.err
	}
	cols := ic.cols
	ctx := context.Background()
	now := b.s.Now()
	var sql strings.Builder
	vars := make([]any, 0, len(rows)*len(cols))
	sql.WriteString("INSERT INTO " + quote(sch.Table) + " (")
	for i, f := range cols {
		if i > 0 {
			sql.WriteString(",")
		}
		sql.WriteString(quote(f.DBName))
	}
	sql.WriteString(") VALUES ")
	for i, row := range rows {
		for _, f := range sch.FieldsWithDefaultDBValue {
			if _, zero := f.ValueOf(ctx, row); !zero {
				return fmt.Errorf("store: queued insert into %s sets %s, which the database makes", sch.Table, f.DBName)
			}
		}
		if i > 0 {
			sql.WriteString(",")
		}
		sql.WriteString("(")
		for j, f := range cols {
			v, zero := f.ValueOf(ctx, row)
			if zero && (f.DefaultValueInterface != nil || f.AutoCreateTime > 0 || f.AutoUpdateTime > 0) {
				set := f.DefaultValueInterface
				if set == nil {
					set = now
				}
				if err := f.Set(ctx, row, set); err != nil {
					return err
				}
				v, _ = f.ValueOf(ctx, row)
			}
			vars = append(vars, v)
			if j > 0 {
				sql.WriteString(",")
			}
			sql.WriteString("?")
		}
		sql.WriteString(")")
	}
	b.writes = append(b.writes, write{sql: sql.String(), vars: vars})
	return nil
}

// insertColumns are the columns an insert into a table lists.
type insertColumns struct {
	cols []*schema.Field
	err  error
}

func insertColumnsOf(sch *schema.Schema) insertColumns {
	var cols []*schema.Field
	for _, name := range sch.DBNames {
		f := sch.FieldsByDBName[name]
		if !f.Creatable || f.Serializer != nil {
			// Rules of gorm's Create this builder does not follow.
			return insertColumns{err: fmt.Errorf("store: queued insert into %s: column %s has a permission or serializer tag", sch.Table, name)}
		}
		// A column whose value the database makes (an autoincrement key)
		// is left out, as gorm does.
		if !f.HasDefaultValue || f.DefaultValueInterface != nil {
			cols = append(cols, f)
		}
	}
	return insertColumns{cols: cols}
}

// UpdateLater queues a guarded update: the row of model with primary key
// id gets values if guard (a condition with ? placeholders and args) holds
// for it, and if it does not, Tx.Flush fails with ErrUnchanged. The check
// and the change are one statement, so of two changes that update the
// same row under the same guard, one wins. The row is found by its key
// alone (see keyed).
func (t *Tx) UpdateLater(model any, id string, values map[string]any, guard string, args ...any) error {
	if len(values) == 0 || guard == "" {
		return errors.New("store: UpdateLater needs values and a guard")
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	sch := t.s.schemaOf(model)
	if pk := sch.PrioritizedPrimaryField; pk == nil || pk.DBName != "id" {
		return fmt.Errorf("store: UpdateLater needs a table keyed by id, not %s", sch.Table)
	}
	var sql strings.Builder
	vars := make([]any, 0, len(keys)+1+len(args))
	sql.WriteString("UPDATE " + quote(sch.Table) + " SET ")
	for i, k := range keys {
		if sch.FieldsByDBName[k] == nil {
			return fmt.Errorf("store: %s has no column %s", sch.Table, k)
		}
		if i > 0 {
			sql.WriteString(",")
		}
		sql.WriteString(quote(k) + "=?")
		vars = append(vars, values[k])
	}
	sql.WriteString(" WHERE " + keyed(guard))
	vars = append(vars, id)
	t.writes = append(t.writes, write{sql: sql.String(), vars: append(vars, args...), guard: true})
	return nil
}

// DeleteLater queues the deletion of the rows of model that where selects.
func (t *Tx) DeleteLater(model any, where string, args ...any) error {
	if where == "" {
		return errors.New("store: DeleteLater needs a condition")
	}
	t.writes = append(t.writes, write{sql: "DELETE FROM " + quote(t.s.schemaOf(model).Table) + " WHERE " + where, vars: args})
	return nil
}

// quote quotes an identifier (both databases take double quotes; the
// names are the models' own).
func quote(name string) string { return `"` + name + `"` }

// Flush runs the writes queued so far, with the audit events and log
// entries recorded so far: on PostgreSQL one statement. A guarded update
// that changed nothing makes it fail with ErrUnchanged; the transaction
// can then still read, to say why, before fn returns the error that
// rolls it back.
func (t *Tx) Flush() error { return t.flush(t.DB) }

// flush queues the audit events and log entries, stamped with the actor
// and the time, after the other writes, and runs them all through db (a
// transaction, or on PostgreSQL the pool for Store.Insert).
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
	if len(ws) == 0 {
		return nil
	}
	ctx, pool := db.Statement.Context, db.Statement.ConnPool
	if !b.s.postgres {
		for _, w := range ws {
			b.s.sent.Add(1)
			res, err := pool.ExecContext(ctx, w.sql, w.vars...)
			if err != nil {
				return err
			}
			if w.guard {
				if n, err := res.RowsAffected(); err != nil {
					return err
				} else if n == 0 {
					return ErrUnchanged
				}
			}
		}
		return nil
	}
	sql, vars, guards := combine(ws, b.whole)
	b.s.sent.Add(1)
	if guards == 0 {
		_, err := pool.ExecContext(ctx, sql, vars...)
		return err
	}
	counts := make([]int64, guards)
	dest := make([]any, guards)
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := pool.QueryRowContext(ctx, sql, vars...).Scan(dest...); err != nil {
		if b.whole && isDivisionByZero(err) {
			return ErrUnchanged
		}
		return err
	}
	if b.whole {
		return nil // every guard changed a row, or the statement failed
	}
	for _, n := range counts {
		if n == 0 {
			return ErrUnchanged
		}
	}
	return nil
}

// combine joins statements into one PostgreSQL statement, its
// placeholders numbered $1, $2, … in order. Without guarded updates, all
// but the last become WITH clauses of the last. With them, every
// statement is a WITH clause, a guarded update RETURNING a row per row it
// changed, and the statement selects how many each changed: the guards
// run first, in their order, as the SELECT reads them; the other clauses
// after it. With whole, it selects 1 divided by each count instead, so
// that a guard that changed nothing fails the statement (division by
// zero) and, the statement being its own transaction, undoes every clause.
func combine(ws []write, whole bool) (sql string, vars []any, guards int) {
	var b strings.Builder
	var counts []string
	for _, w := range ws {
		if w.guard {
			guards++
		}
	}
	n := 0
	number := func(sql string) (out string) {
		out, n = numbered(sql, n)
		return out
	}
	for i, w := range ws {
		vars = append(vars, w.vars...)
		if i == len(ws)-1 && guards == 0 {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(number(w.sql))
			break
		}
		if i == 0 {
			b.WriteString("WITH ")
		} else {
			b.WriteString(", ")
		}
		if w.guard {
			fmt.Fprintf(&b, "w%d AS (%s RETURNING 1)", i, number(w.sql))
			if whole {
				counts = append(counts, fmt.Sprintf("1/(SELECT count(*) FROM w%d)", i))
			} else {
				counts = append(counts, fmt.Sprintf("(SELECT count(*) FROM w%d)", i))
			}
		} else {
			fmt.Fprintf(&b, "w%d AS (%s)", i, number(w.sql))
		}
	}
	if guards > 0 {
		b.WriteString(" SELECT ")
		b.WriteString(strings.Join(counts, ", "))
	}
	return b.String(), vars, guards
}
