package store

import (
	"bytes"
	"context"
	"database/sql"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// The reads every request makes (its token's owner; a device's request
// with its record, parties and key packets) go straight through
// database/sql instead of gorm's query pipeline, which cost two to three
// times the query itself in statement building, callbacks and reflective
// scanning (issue 11). The columns and the values' conversions still come
// from gorm: the models' parsed schemas list the columns, and each value
// is stored with the field's own gorm setter, so these reads see the rows
// exactly as gorm's.

// cached returns the value m holds for key, built the first time.
func cached[V any](m *sync.Map, key any, build func() V) V {
	if v, ok := m.Load(key); ok {
		return v.(V)
	}
	v, _ := m.LoadOrStore(key, build())
	return v.(V)
}

// schemaOf returns model's parsed gorm schema, parsed once per model type.
func (s *Store) schemaOf(model any) *schema.Schema {
	return cached(&s.schemas, reflect.TypeOf(model), func() *schema.Schema {
		stmt := &gorm.Statement{DB: s.db}
		if err := stmt.Parse(model); err != nil {
			panic("store: parsing a model: " + err.Error()) // the models are the package's own
		}
		return stmt.Schema
	})
}

// columnsOf returns the fields of model's table that have a column.
func (s *Store) columnsOf(model any) []*schema.Field {
	return cached(&s.columns, reflect.TypeOf(model), func() []*schema.Field {
		var fs []*schema.Field
		for _, f := range s.schemaOf(model).Fields {
			if f.DBName != "" {
				fs = append(fs, f)
			}
		}
		return fs
	})
}

// statement returns the SQL build makes, with ? placeholders (numbered
// $1, $2, … on PostgreSQL), built once per key: the package's statements
// depend only on their key.
func (s *Store) statement(key any, build func() string) string {
	return cached(&s.statements, key, func() string {
		q := build()
		if s.postgres {
			q, _ = numbered(q, 0)
		}
		return q
	})
}

// statementName keys a statement of the package's own (see statement).
type statementName string

// columnOf returns the field of model's column name.
func (s *Store) columnOf(model any, name string) *schema.Field {
	for _, f := range s.columnsOf(model) {
		if f.DBName == name {
			return f
		}
	}
	panic("store: no column " + name)
}

// selectList is the column list of model's table under alias.
func (s *Store) selectList(alias string, model any) string {
	fs := s.columnsOf(model)
	cols := make([]string, len(fs))
	for i, f := range fs {
		cols[i] = alias + "." + quote(f.DBName) // log_entries has a column named index
	}
	return strings.Join(cols, ", ")
}

// nullList is a NULL for each column of model's table: a UNION ALL's
// stand-in for a part's columns on the other parts' rows.
func (s *Store) nullList(model any) string {
	return strings.TrimSuffix(strings.Repeat("NULL, ", len(s.columnsOf(model))), ", ")
}

// into appends to dst a scan target for each column of model's table,
// storing into the struct v points to.
func (s *Store) into(ctx context.Context, dst []any, v any) []any {
	rv := reflect.ValueOf(v).Elem()
	fs := s.columnsOf(v)
	// One allocation for the targets; a pointer in an interface is none.
	ts := make([]fieldTarget, len(fs))
	for i, f := range fs {
		ts[i] = fieldTarget{ctx, f, rv}
		dst = append(dst, &ts[i])
	}
	return dst
}

// fieldTarget stores a column's value into a field with gorm's setter
// (NULL as the zero value, text as a time on SQLite, and so on).
type fieldTarget struct {
	ctx context.Context
	f   *schema.Field
	v   reflect.Value
}

func (t *fieldTarget) Scan(src any) error {
	if b, ok := src.([]byte); ok {
		src = bytes.Clone(b) // the driver's buffer, valid until the next row
	}
	return t.f.Set(t.ctx, t.v, src)
}

// query runs a read made by statement through gorm's connection pool
// (database/sql underneath): on SQLite it prepares each statement once per
// connection and keeps it (gorm's PrepareStmt), on PostgreSQL pgx caches
// the statement itself.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	s.sent.Add(1)
	return s.reads.QueryContext(ctx, q, args...)
}

// numbered turns the ? placeholders of q into $n+1, $n+2, … and returns
// the last number used. Every ? in the package's SQL is a placeholder: no
// statement has a literal with one.
func numbered(q string, n int) (string, int) {
	var b strings.Builder
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
		} else {
			b.WriteRune(c)
		}
	}
	return b.String(), n
}

// queryOne scans the one row q selects into dst; ErrNotFound if there is
// none.
func (s *Store) queryOne(ctx context.Context, dst []any, q string, args ...any) error {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return ErrNotFound
	}
	if err := rows.Scan(dst...); err != nil {
		return err
	}
	return rows.Close()
}

// readRows reads the rows of T's table that where (a condition with ?
// placeholders, or "") selects, in the order of orderBy (or none), at most
// limit of them (0: all).
func readRows[T any](ctx context.Context, s *Store, where, orderBy string, limit int, args ...any) ([]T, error) {
	q := s.statement(readKey{reflect.TypeFor[T](), where, orderBy, limit}, func() string {
		sql := "SELECT " + s.selectList("t", new(T)) + " FROM " + quote(s.schemaOf(new(T)).Table) + " t"
		if where != "" {
			sql += " WHERE " + where
		}
		if orderBy != "" {
			sql += " ORDER BY " + orderBy
		}
		if limit > 0 {
			sql += " LIMIT " + strconv.Itoa(limit)
		}
		return sql
	})
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(s.into(ctx, nil, &v)...); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// readKey names a statement of readRows.
type readKey struct {
	t              reflect.Type
	where, orderBy string
	limit          int
}

// readOne reads the row of T's table that where selects; ErrNotFound if
// there is none.
func readOne[T any](ctx context.Context, s *Store, where string, args ...any) (*T, error) {
	rs, err := readRows[T](ctx, s, where, "", 1, args...)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, ErrNotFound
	}
	return &rs[0], nil
}
