package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
)

// TestMigrate: every way a database can meet Migrate ends at the latest
// version with its rows intact, and Migrate says where it started.
func TestMigrate(t *testing.T) {
	latest := store.LatestSchemaVersion()
	if latest < 2 {
		t.Fatalf("latest schema version %d; the tests below need a previous version", latest)
	}
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range []struct {
				name string
				// prepare brings the empty database to the starting point.
				prepare    func(t *testing.T, s *store.Store)
				wantBefore int64
				adopted    bool
				wantReport string
			}{
				{"empty", func(*testing.T, *store.Store) {}, 0, false, "created the database: migrated from version 0 to %d (20 tables)"},
				{"previous version", func(t *testing.T, s *store.Store) {
					if _, err := s.MigrateTo(context.Background(), latest-1); err != nil {
						t.Fatal(err)
					}
				}, latest - 1, false, "migrated the database from version %d to %d"},
				{"made by AutoMigrate", func(t *testing.T, s *store.Store) {
					if err := s.AutoMigrateLegacy(context.Background()); err != nil {
						t.Fatal(err)
					}
				}, 0, true, "adopted the database made before versioned migrations as version 1, then migrated it to version %d"},
				{"latest version", func(t *testing.T, s *store.Store) {
					if err := s.Migrate(context.Background()); err != nil {
						t.Fatal(err)
					}
				}, latest, false, "the database is at version %d, up to date"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					ctx := context.Background()
					s := storetest.OpenEmpty(t, b)
					tc.prepare(t, s)
					var u *store.User
					if tc.wantBefore > 0 || tc.adopted {
						u = &store.User{ID: store.NewID(), Handle: "alice", ChainEpoch: 3}
						if err := s.DB(ctx).Create(u).Error; err != nil {
							t.Fatal(err)
						}
					}
					m, err := s.MigrateReport(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if m.Before != tc.wantBefore || m.After != latest || m.Adopted != tc.adopted {
						t.Fatalf("migrated %+v; want from %d to %d, adopted %v", m, tc.wantBefore, latest, tc.adopted)
					}
					var want string
					switch strings.Count(tc.wantReport, "%d") {
					case 1:
						want = fmt.Sprintf(tc.wantReport, latest)
					default:
						want = fmt.Sprintf(tc.wantReport, tc.wantBefore, latest)
					}
					if m.String() != want {
						t.Errorf("report %q, want %q", m, want)
					}
					if v, err := s.SchemaVersion(ctx); err != nil || v != latest {
						t.Fatalf("schema version %d, %v; want %d", v, err, latest)
					}
					if u != nil {
						var got store.User
						if err := store.First(s.DB(ctx), &got, "id = ?", u.ID); err != nil || got.Handle != u.Handle || got.ChainEpoch != 3 {
							t.Fatalf("the user before the migration: %+v, %v", got, err)
						}
					}
					for _, idx := range []string{"idx_requests_user_state", "idx_records_user_created", "idx_grants_party_created"} {
						if !s.DB(ctx).Migrator().HasIndex("requests", idx) && !s.DB(ctx).Migrator().HasIndex("records", idx) && !s.DB(ctx).Migrator().HasIndex("grants", idx) {
							t.Errorf("no index %s", idx)
						}
					}
					if again, err := s.MigrateReport(ctx); err != nil || again.Before != latest || again.After != latest {
						t.Fatalf("migrating again: %+v, %v", again, err)
					}
				})
			}
		})
	}
}

// TestVersion1IsAutoMigrateSchema: version 1 makes exactly the tables,
// columns, indexes and constraints AutoMigrate made, so that a database
// AutoMigrate made and one migrated from empty are the same at version 1.
func TestVersion1IsAutoMigrateSchema(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			versioned := storetest.OpenEmpty(t, b)
			if _, err := versioned.MigrateTo(ctx, 1); err != nil {
				t.Fatal(err)
			}
			legacy := storetest.OpenEmpty(t, b)
			if err := legacy.AutoMigrateLegacy(ctx); err != nil {
				t.Fatal(err)
			}
			got, want := describeSchema(t, versioned), describeSchema(t, legacy)
			if len(want) < 50 {
				t.Fatalf("the schema description is too short to mean anything:\n%s", strings.Join(want, "\n"))
			}
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("version 1 lacks: %s", w)
				}
			}
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Errorf("version 1 has what AutoMigrate did not make: %s", g)
				}
			}
		})
	}
}

// TestLatestIsModelSchema: the latest version makes exactly what the
// models describe, so the gorm tags and the SQL files cannot drift apart.
func TestLatestIsModelSchema(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			versioned := storetest.OpenEmpty(t, b)
			if err := versioned.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			models := storetest.OpenEmpty(t, b)
			if err := models.AutoMigrateModels(ctx); err != nil {
				t.Fatal(err)
			}
			// SQLite keeps ALTER TABLE ADD COLUMN as ", col" in the
			// table's text; AutoMigrate writes ",col".
			norm := func(rows []string) []string {
				for i, r := range rows {
					rows[i] = strings.ReplaceAll(r, ", `", ",`")
				}
				return rows
			}
			got, want := norm(describeSchema(t, versioned)), norm(describeSchema(t, models))
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("the latest version lacks: %s", w)
				}
			}
			// Version 2's indexes and version 9's expression indexes
			// exist only in SQL (no model tag).
			sqlOnly := []string{"idx_requests_user_state", "idx_records_user_created", "idx_records_party_created",
				"idx_grants_user_created", "idx_grants_party_created", "idx_records_pending_expiry", "idx_requests_open_expiry"}
			for _, g := range got {
				if !slices.Contains(want, g) && !slices.ContainsFunc(sqlOnly, func(name string) bool { return strings.Contains(g, "INDEX "+name+" ") }) {
					t.Errorf("the latest version has what the models do not describe: %s", g)
				}
			}
		})
	}
}

// describeSchema lists the schema's tables, columns, indexes and
// constraints, one line each, without goose's version table.
func describeSchema(t *testing.T, s *store.Store) []string {
	t.Helper()
	ctx := context.Background()
	var queries []string
	if s.Postgres() {
		queries = []string{
			`SELECT 'column ' || table_name || '.' || column_name || ' ' || ordinal_position || ' ' || data_type || ' ' ||
				coalesce(character_maximum_length::text, '-') || ' null:' || is_nullable || ' default:' || coalesce(column_default, '-')
			 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name NOT LIKE 'goose%'`,
			`SELECT 'index ' || replace(indexdef, current_schema() || '.', '')
			 FROM pg_indexes WHERE schemaname = current_schema() AND tablename NOT LIKE 'goose%'`,
			`SELECT 'constraint ' || conname || ' ' || contype::text || ' ' || conrelid::regclass::text
			 FROM pg_constraint WHERE connamespace = current_schema()::regnamespace AND conrelid::regclass::text NOT LIKE 'goose%'`,
			`SELECT 'sequence ' || sequence_name || ' ' || data_type FROM information_schema.sequences
			 WHERE sequence_schema = current_schema() AND sequence_name NOT LIKE 'goose%'`,
		}
	} else {
		queries = []string{
			`SELECT type || ' ' || name || ' ' || replace(coalesce(sql, ''), 'IF NOT EXISTS ', '')
			 FROM sqlite_master WHERE name NOT LIKE 'goose%' AND name <> 'sqlite_sequence'`,
		}
	}
	var out []string
	for _, q := range queries {
		var rows []string
		if err := s.DB(ctx).Raw(q).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		out = append(out, rows...)
	}
	slices.Sort(out)
	return out
}

// TestMigrateRefusesOlderUnversioned: a database older than the last
// AutoMigrate schema (here: without users.chain_epoch) is refused with the
// column it lacks, and left as it was.
func TestMigrateRefusesOlderUnversioned(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.OpenEmpty(t, b)
			if err := s.AutoMigrateLegacy(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.DB(ctx).Exec("ALTER TABLE users DROP COLUMN chain_epoch").Error; err != nil {
				t.Fatal(err)
			}
			_, err := s.MigrateReport(ctx)
			if err == nil || !strings.Contains(err.Error(), "users.chain_epoch") {
				t.Fatalf("migrating a database without users.chain_epoch: %v", err)
			}
			if v, err := s.SchemaVersion(ctx); err != nil || v != 0 {
				t.Fatalf("schema version %d, %v; want 0", v, err)
			}
			if s.DB(ctx).Migrator().HasTable("goose_db_version") {
				t.Fatal("the refused database got a version table")
			}
		})
	}
}

// TestMigrateHistoryPositions: version 5 gives the leaves sequenced
// before it their positions in their user histories.
func TestMigrateHistoryPositions(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.OpenEmpty(t, b)
			if _, err := s.MigrateTo(ctx, 4); err != nil {
				t.Fatal(err)
			}
			rows := []struct {
				seq           int64
				user, history string
			}{{0, "u1", "chain"}, {1, "u2", "chain"}, {2, "u1", "chain"}, {3, "", ""}, {4, "u1", "decisions"}, {5, "u1", "chain"}}
			for _, r := range rows {
				if err := s.DB(ctx).Exec(`INSERT INTO log_entries (kind, leaf, seq, user_id, history) VALUES ('x', ?, ?, ?, ?)`,
					[]byte{byte(r.seq)}, r.seq, r.user, r.history).Error; err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			var got []store.LogEntry
			if err := s.DB(ctx).Order("seq").Find(&got).Error; err != nil {
				t.Fatal(err)
			}
			want := []int64{0, 0, 1, -1, 0, 2}
			for i, e := range got {
				p := int64(-1)
				if e.HistPos != nil {
					p = *e.HistPos
				}
				if p != want[i] {
					t.Errorf("leaf %d (%s %s): position %d, want %d", i, e.UserID, e.History, p, want[i])
				}
			}
		})
	}
}

// TestMigrateSessionKeyIDs: version 7 fills in the session key id of the
// records approved before it, from their approval statements, and of no
// other record (a rejection names one too).
func TestMigrateSessionKeyIDs(t *testing.T) {
	const skid = "a19e1069cb2e70d793468d941d3f80deb1ef0324ede4423d238ec6d85310e3c7"
	approval := "keyholder-approval-v2\nrecord: r1\nuser: u1\ndevice: D\nsubmitter: S\n" +
		"key-packets-sha256: 67e009bfc34442734b0c0b4db6091904a798eec439c449e98483309a08e9b85e\n" +
		"session-key-id: " + skid + "\nciphertext-sha256: b8525b6235c7ac351667c3fc8a4f74965079ee480d9e9b19a7374f6e01a66cf8\n"
	rejection := strings.Replace(approval, "approval", "rejection", 1)
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.OpenEmpty(t, b)
			if _, err := s.MigrateTo(ctx, 6); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct{ id, state, stmt string }{
				{"approved", store.StateApproved, approval},
				{"rejected", store.StateRejected, rejection},
				{"pending", store.StatePending, ""},
			} {
				var stmt []byte
				if r.stmt != "" {
					stmt = []byte(r.stmt)
				}
				if err := s.DB(ctx).Exec(`INSERT INTO records (id, user_id, party_id, state, profile, ciphertext_sha256, metadata_sha256, decision_statement, created_at, expires_at)
					VALUES (?, 'u1', 'p1', ?, 'compat', 'c', 'm', ?, ?, ?)`, r.id, r.state, stmt, time.Now(), time.Now()).Error; err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			rs, err := s.ApprovedWithSessionKey(ctx, "u1", skid)
			if err != nil || len(rs) != 1 || rs[0].ID != "approved" {
				t.Fatalf("records by session key id: %v %v", rs, err)
			}
		})
	}
}

// TestAuthNotified: the token cache may be turned on only where the
// schema announces changes to tokens, devices and parties: PostgreSQL at
// version 8. An UPDATE there, and a DELETE, are announced on AuthChannel.
func TestAuthNotified(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := storetest.OpenEmpty(t, b)
			if _, err := s.MigrateTo(ctx, 7); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.AuthNotified(ctx); err != nil || ok {
				t.Fatalf("at version 7: AuthNotified = %v, %v; want false", ok, err)
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			ok, err := s.AuthNotified(ctx)
			if err != nil || ok != (b.Name == "postgres") {
				t.Fatalf("at the latest version on %s: AuthNotified = %v, %v", b.Name, ok, err)
			}
			if b.Name != "postgres" {
				return
			}
			// A trigger disabled: a change to devices would go unheard.
			for _, c := range []struct {
				sql  string
				want bool
			}{
				{"ALTER TABLE devices DISABLE TRIGGER devices_auth_updated", false},
				{"ALTER TABLE devices ENABLE TRIGGER devices_auth_updated", true},
			} {
				if err := s.DB(ctx).Exec(c.sql).Error; err != nil {
					t.Fatal(err)
				}
				if ok, err := s.AuthNotified(ctx); err != nil || ok != c.want {
					t.Fatalf("after %s: AuthNotified = %v, %v", c.sql, ok, err)
				}
			}
			// Every statement that changes a row is announced, in the
			// transaction's commit; inserts are not, nor statements that
			// change nothing, nor deleting tokens that had all expired.
			for _, c := range []struct {
				sql  string
				want int
			}{
				{"INSERT INTO tokens (hash, subject_kind, subject_id, expires_at) VALUES ('h', 'device', 'd', now() + interval '1 hour')", 0},
				{"INSERT INTO tokens (hash, subject_kind, subject_id, expires_at) VALUES ('old', 'device', 'd', now() - interval '1 second')", 0},
				{"INSERT INTO devices (id, user_id, fingerprint, public_key, status) VALUES ('d', 'u', 'f', 'k', 'active')", 0},
				{"UPDATE devices SET push_dead = true WHERE id = 'none'", 0},
				{"DELETE FROM parties WHERE id = 'none'", 0},
				{"DELETE FROM tokens WHERE hash = 'old'", 0},
				{"UPDATE devices SET status = 'revoked' WHERE id = 'd'", 1},
				{"UPDATE tokens SET expires_at = now() + interval '2 hours' WHERE hash = 'h'", 1},
				{"DELETE FROM tokens", 1},
				{"DELETE FROM devices", 1},
				{"TRUNCATE parties CASCADE", 1},
			} {
				if got := notifications(t, s, c.sql); got != c.want {
					t.Errorf("%s: %d notifications on %s, want %d", c.sql, got, store.AuthChannel, c.want)
				}
			}
		})
	}
}

// notifications runs sql on one connection that LISTENs on AuthChannel
// and counts what it hears from its own schema (other tests' schemas share
// the channel).
func notifications(t *testing.T, s *store.Store, sql string) int {
	t.Helper()
	ctx := context.Background()
	db, err := s.DB(ctx).DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "LISTEN "+store.AuthChannel); err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := conn.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "UNLISTEN *")
	if _, err := conn.ExecContext(ctx, sql); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = conn.Raw(func(dc any) error {
		pc := dc.(interface{ Conn() *pgx.Conn }).Conn()
		for {
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			m, err := pc.WaitForNotification(wctx)
			cancel()
			if err != nil {
				return nil // none within 200 ms: all heard
			}
			if m.Payload == schema {
				n++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDownAndUp: the Downs of versions 9 and 10 give back the previous
// version's indexes, and Up the latest schema again.
func TestDownAndUp(t *testing.T) {
	for _, b := range storetest.Backends() {
		for _, v := range []int64{9, 10} {
			t.Run(fmt.Sprintf("%s/%d", b.Name, v), func(t *testing.T) {
				ctx := context.Background()
				s := storetest.OpenEmpty(t, b)
				if _, err := s.MigrateTo(ctx, v-1); err != nil {
					t.Fatal(err)
				}
				before := describeSchema(t, s)
				if _, err := s.MigrateTo(ctx, v); err != nil {
					t.Fatal(err)
				}
				if slices.Equal(before, describeSchema(t, s)) {
					t.Fatalf("version %d changed nothing", v)
				}
				if err := s.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				latest := describeSchema(t, s)
				if err := s.DownTo(ctx, v-1); err != nil {
					t.Fatal(err)
				}
				if got := describeSchema(t, s); !slices.Equal(sorted(got), sorted(before)) {
					t.Errorf("down to %d:\n%s\nwant\n%s", v-1, strings.Join(sorted(got), "\n"), strings.Join(sorted(before), "\n"))
				}
				if err := s.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				if got := describeSchema(t, s); !slices.Equal(sorted(got), sorted(latest)) {
					t.Errorf("up again:\n%s\nwant\n%s", strings.Join(sorted(got), "\n"), strings.Join(sorted(latest), "\n"))
				}
			})
		}
	}
}

func sorted(xs []string) []string { return slices.Sorted(slices.Values(xs)) }
