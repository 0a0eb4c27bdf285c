package store

import (
	"context"
	"database/sql"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestGuardedWritesFindTheRowByKey: the writes that change or lock one row
// under a guard (an approval's record and request, the sweeper's expiry of
// a record, the revocation of a grant) find the row by its primary key,
// whatever PostgreSQL's statistics say. With statistics taken when nothing
// was pending, and a burst of pending records since, PostgreSQL planned an
// approval's "id = ? AND state = 'pending'" on an index of pending records
// and read all of them on each approval (issue 11). Both plan modes are
// checked: custom plans (a statement's first executions) and the generic
// plan a pooled connection's prepared statement keeps.
func TestGuardedWritesFindTheRowByKey(t *testing.T) {
	dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("PostgreSQL's planner: KEYHOLDER_TEST_POSTGRES is not set")
	}
	s := openInternal(t, internalBackend{"postgres", dsn}, nil)
	ctx := context.Background()
	pool, err := s.db.DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows := func(state, reqState string, n int) {
		exec(`INSERT INTO records (id, user_id, party_id, state, profile, ciphertext_sha256, metadata_sha256, expires_at, created_at)
			SELECT md5(random()::text), 'u', 'p', '` + state + `', 'compat', 'x', 'y', now() + interval '1 day', now()
			FROM generate_series(1, ` + itoa(n) + `)`)
		exec(`INSERT INTO requests (id, kind, record_id, user_id, party_id, state, expires_at, created_at)
			SELECT md5(random()::text), 'approval', 'r', 'u', 'p', '` + reqState + `', now() + interval '1 day', now()
			FROM generate_series(1, ` + itoa(n) + `)`)
		exec(`INSERT INTO grants (id, record_id, party_id, user_id, request_id, device_id, key_packet, statement, signature, expires_at, created_at)
			SELECT md5(random()::text), md5(random()::text), 'p', 'u', md5(random()::text), 'd', '', '', '', now(), now()
			FROM generate_series(1, ` + itoa(n) + `)`)
	}
	rows(StateApproved, RequestAnswered, 3000)
	exec(`ANALYZE records; ANALYZE requests; ANALYZE grants`)
	rows(StatePending, RequestOpen, 2000)

	// The statements as the store builds them.
	tx := &Tx{DB: s.db.WithContext(ctx), Batch: &Batch{s: s}}
	if err := tx.DecidePendingRecord("r1", Decision{State: StateApproved, DeviceID: "d", UserID: "u", SessionKeyID: "k"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.AnswerOpenRequest("q1", AnswerApproved, "d"); err != nil {
		t.Fatal(err)
	}
	type stmt struct {
		sql  string
		args []any
	}
	var guarded []stmt
	for _, w := range tx.writes {
		if w.guard {
			guarded = append(guarded, stmt{w.sql, w.vars})
		}
	}
	if len(guarded) != 2 {
		t.Fatalf("%d guarded writes queued, want the record's and the request's", len(guarded))
	}
	guarded = append(guarded,
		stmt{`UPDATE "records" SET "state" = 'expired' WHERE ` + keyed("state = ?"), []any{"r1", StatePending}},
		stmt{`SELECT * FROM "grants" WHERE ` + keyed("user_id = ?") + ` FOR UPDATE`, []any{"g1", "u"}})
	// The same conditions without keyed: the setup must mislead the
	// planner, or the test shows nothing.
	plain := []stmt{
		{`UPDATE "records" SET "state" = 'expired' WHERE id = ? AND state = ?`, []any{"r1", StatePending}},
		{`UPDATE "requests" SET "state" = 'expired' WHERE id = ? AND state = ? AND expires_at > now()`, []any{"q1", RequestOpen}},
	}
	plan := func(st stmt) string {
		t.Helper()
		q, _ := numbered("EXPLAIN "+st.sql, 0)
		rs, err := conn.QueryContext(ctx, q, st.args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rs.Close()
		var lines []string
		for rs.Next() {
			var l sql.NullString
			if err := rs.Scan(&l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l.String)
		}
		return strings.Join(lines, "\n")
	}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		exec("SET plan_cache_mode = " + mode)
		for _, st := range guarded {
			if p := plan(st); !strings.Contains(p, "_pkey") || strings.Contains(p, " idx_") {
				t.Errorf("%s: %s\nis not planned on the primary key alone:\n%s", mode, st.sql, p)
			}
		}
		if mode == "force_custom_plan" {
			for _, st := range plain {
				if p := plan(st); !strings.Contains(p, " idx_") {
					t.Errorf("the statistics did not mislead the planner; %s\nis planned:\n%s", st.sql, p)
				}
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
