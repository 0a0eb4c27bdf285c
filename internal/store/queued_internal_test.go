package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of the package's own statement builder and direct reads against
// gorm's: the rows written by InsertLater and UpdateLater, and the rows
// read by readRows, must be exactly gorm's, on both databases. They are
// internal tests (storetest imports this package).

type internalBackend struct{ name, dsn string }

func internalBackends() []internalBackend {
	b := []internalBackend{{"sqlite", ""}}
	if dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES"); dsn != "" {
		b = append(b, internalBackend{"postgres", dsn})
	}
	return b
}

func openInternal(t *testing.T, b internalBackend, now func() time.Time) *Store {
	opts := Options{Now: now}
	dsn := b.dsn
	if dsn == "" {
		dsn = filepath.Join(t.TempDir(), "k.db")
	} else {
		opts.Schema = "kh_internal_" + NewID()[:16]
	}
	s, err := Open(dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if opts.Schema != "" {
			_ = s.DropSchema(opts.Schema)
		}
		s.Close()
	})
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// dump returns the raw rows of model's table, one string a row, sorted.
func dump(t *testing.T, s *Store, model any) []string {
	sch := s.schemaOf(model)
	var q string
	if s.postgres {
		q = `SELECT row_to_json(x)::text FROM ` + quote(sch.Table) + ` x`
	} else {
		var parts []string
		for _, c := range sch.DBNames {
			parts = append(parts, fmt.Sprintf(`'%s=' || typeof(%s) || ':' || quote(%s)`, c, quote(c), quote(c)))
		}
		q = `SELECT ` + strings.Join(parts, " || ' ' || ") + ` FROM ` + quote(sch.Table)
	}
	rows, err := s.reads.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// samples are two rows of every model, or more: zero values, nil and empty
// byte slices and pointers, times in other zones with nanoseconds, strings
// with placeholders and quotes, preset and database-made keys.
func samples() []any {
	loc := time.FixedZone("X", 3600+1800)
	ts := time.Date(2026, 3, 4, 5, 6, 7, 123456789, loc)
	lt := time.Date(2026, 3, 4, 5, 6, 7, 987654321, time.Local)
	s := func(v string) *string { return &v }
	i := func(v int64) *int64 { return &v }
	return []any{
		&User{ID: "u1", Handle: "h1"},
		&User{ID: "u2", Handle: "h2", CreatedAt: ts, RecoveryKey: []byte{}, ChainEpoch: 3},
		&ChainLink{ID: "c1", UserID: "u1", Statement: []byte{}, Signature: []byte{0}},
		&ChainLink{ID: "c2", UserID: "u1", Seq: 1, Statement: []byte("x"), Signature: []byte{0}, PublicKey: []byte{}, CreatedAt: lt},
		&PendingDevice{ID: "p1", PublicKey: []byte{}},
		&PendingDevice{ID: "p2", PublicKey: []byte("k"), ExpiresAt: ts, CreatedAt: lt},
		&EnrollmentCode{ID: "e1", CodeHash: "a"},
		&EnrollmentCode{ID: "e2", CodeHash: "b", UsedAt: &ts, ExpiresAt: lt},
		&Device{ID: "d1", Fingerprint: "f1", PublicKey: []byte{}},
		&Device{ID: "d2", Fingerprint: "f2", PublicKey: []byte{1}, PushDead: true, RevokedAt: &lt, CreatedAt: ts},
		&Party{ID: "pa1", Fingerprint: "f1", PublicKey: []byte{}},
		&Nonce{Hash: "n1"},
		&Nonce{Hash: "n2", Used: true, ExpiresAt: ts},
		&Token{Hash: "t1"},
		&Record{ID: "r1", PartyID: "pa1"},
		&Record{ID: "r2", PartyID: "pa1", BlobKey: s(""), IdempotencyKey: s("?x'\"$1"), Metadata: []byte{}, Private: nil,
			Size: -1, DecidedAt: &ts, CreatedAt: lt, ExpiresAt: ts, Purpose: "what? $1 '?'"},
		&InlineCiphertext{RecordID: "r1", Data: []byte{}},
		&[]RecordKeyPacket{{RecordID: "r1", Packet: []byte{}}, {RecordID: "r1", Recovery: true, Packet: []byte{0, 1}}},
		&Request{ID: "q1"},
		&Request{ID: "q2", GrantExpires: &ts, AnsweredAt: &lt, IdempotencyKey: s("")},
		&Grant{ID: "g1", RequestID: "q1", KeyPacket: []byte{}, Statement: []byte{}, Signature: []byte{}},
		&Grant{ID: "g2", RequestID: "q2", KeyPacket: []byte{}, Statement: []byte{}, Signature: []byte{}, RevokedAt: &ts, ExpiresAt: lt},
		&[]AuditEvent{{}, {Time: ts, ActorKind: "a"}},
		&[]LogEntry{{Kind: "k", Leaf: []byte{}}, {Kind: "k", Leaf: []byte("l"), Time: ts, Seq: i(0), HistPos: i(5), LeafHash: []byte{}}},
		&LogHash{ID: 0, Hash: []byte{}},
		&LogHash{ID: 7, Hash: []byte{1}},
		&LogCheckpoint{Size: 0, Note: []byte{}},
		&LogCheckpoint{Size: 1, Note: []byte{}, Published: true},
		&LogMapNode{LabelKey: []byte{}, Node: []byte{}},
		&LogMapNode{LabelKey: []byte{1}, Version: 1, Node: []byte{}},
		&LogMapValue{Label: []byte{2}, Value: []byte{}},
	}
}

// fixed is the stores' clock in these tests (a zone and nanoseconds that
// a database may not keep).
var fixed = time.Date(2026, 11, 27, 12, 0, 0, 555555555, time.Local)

func now() time.Time { return fixed }

// TestInsertLaterAsCreate: rows queued with InsertLater (in an Apply, and
// through Store.Insert, one statement on PostgreSQL) are gorm Create's
// rows, compared raw; readRows reads them as gorm's Find does.
func TestInsertLaterAsCreate(t *testing.T) {
	for _, b := range internalBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			viaGorm, viaLater, viaInsert := openInternal(t, b, now), openInternal(t, b, now), openInternal(t, b, now)
			// gorm's Create, one by one.
			for _, v := range samples() {
				if err := viaGorm.db.Create(v).Error; err != nil {
					t.Fatalf("create %T: %v", v, err)
				}
			}
			queue := func(b *Batch) error {
				for _, v := range samples() {
					if err := b.InsertLater(v); err != nil {
						return fmt.Errorf("%T: %w", v, err)
					}
				}
				return nil
			}
			// InsertLater in an Apply, and through Store.Insert (one
			// statement on PostgreSQL).
			if err := viaLater.Apply(ctx, Actor{}, func(tx *Tx) error { return queue(tx.Batch) }); err != nil {
				t.Fatal(err)
			}
			if err := viaInsert.Insert(ctx, Actor{}, queue); err != nil {
				t.Fatal(err)
			}
			for _, m := range allModels() {
				want := dump(t, viaGorm, m)
				for name, s := range map[string]*Store{"Apply": viaLater, "Insert": viaInsert} {
					got := dump(t, s, m)
					if !reflect.DeepEqual(got, want) {
						t.Errorf("%T via %s:\n got  %q\n want %q", m, name, got, want)
					}
				}
			}
			// direct reads vs gorm reads, every model.
			cmp := func(name string, direct func() (any, error), gormv any) {
				got, err := direct()
				if err != nil {
					t.Errorf("direct %s: %v", name, err)
					return
				}
				if err := viaGorm.db.Find(gormv).Error; err != nil {
					t.Fatal(err)
				}
				g := reflect.ValueOf(gormv).Elem().Interface()
				if !reflect.DeepEqual(got, g) {
					t.Errorf("%s direct vs gorm:\n %+v\n %+v", name, got, g)
				}
			}
			cmp("users", func() (any, error) { return readRows[User](ctx, viaGorm, "", "", 0) }, &[]User{})
			cmp("devices", func() (any, error) { return readRows[Device](ctx, viaGorm, "", "", 0) }, &[]Device{})
			cmp("records", func() (any, error) { return readRows[Record](ctx, viaGorm, "", "", 0) }, &[]Record{})
			cmp("requests", func() (any, error) { return readRows[Request](ctx, viaGorm, "", "", 0) }, &[]Request{})
			cmp("grants", func() (any, error) { return readRows[Grant](ctx, viaGorm, "", "", 0) }, &[]Grant{})
			cmp("nonces", func() (any, error) { return readRows[Nonce](ctx, viaGorm, "", "", 0) }, &[]Nonce{})
			cmp("codes", func() (any, error) { return readRows[EnrollmentCode](ctx, viaGorm, "", "", 0) }, &[]EnrollmentCode{})
			cmp("kps", func() (any, error) { return readRows[RecordKeyPacket](ctx, viaGorm, "", "", 0) }, &[]RecordKeyPacket{})
			cmp("audit", func() (any, error) { return readRows[AuditEvent](ctx, viaGorm, "", "", 0) }, &[]AuditEvent{})
			cmp("log", func() (any, error) { return readRows[LogEntry](ctx, viaGorm, "", "", 0) }, &[]LogEntry{})
			cmp("checkpoints", func() (any, error) { return readRows[LogCheckpoint](ctx, viaGorm, "", "", 0) }, &[]LogCheckpoint{})
		})
	}
}

// TestUpdateLaterAsUpdates: a rejection's queued guarded updates and
// deletions leave gorm's Updates' and Delete's rows.
func TestUpdateLaterAsUpdates(t *testing.T) {
	for _, b := range internalBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			a, g := openInternal(t, b, now), openInternal(t, b, now)
			for _, s := range []*Store{a, g} {
				for _, v := range samples() {
					if err := s.db.Create(v).Error; err != nil {
						t.Fatal(err)
					}
				}
				if err := s.db.Model(&Record{}).Where("id = ?", "r2").Update("state", StatePending).Error; err != nil {
					t.Fatal(err)
				}
				s.db.Model(&Request{}).Where("id = ?", "q1").Updates(map[string]any{"state": RequestOpen, "expires_at": fixed.Add(time.Hour).UTC()})
				// The answering device, active (AnswerOpenRequest checks).
				if err := s.db.Create(&Device{ID: "d?$1", Fingerprint: "f?$1", PublicKey: []byte{1}, Status: DeviceActive}).Error; err != nil {
					t.Fatal(err)
				}
			}
			d := Decision{State: StateRejected, Statement: []byte("s?"), Signature: nil, DeviceID: "d?1"}
			err := a.Apply(ctx, Actor{}, func(tx *Tx) error {
				if err := tx.DecidePendingRecord("r2", d); err != nil {
					return err
				}
				return tx.AnswerOpenRequest("q1", AnswerApproved, "d?$1")
			})
			if err != nil {
				t.Fatal(err)
			}
			upd := map[string]any{"state": d.State, "decision_statement": d.Statement, "decision_signature": d.Signature,
				"decided_by": d.DeviceID, "decided_at": fixed.UTC(), "blob_key": nil, "private": nil}
			g.db.Model(&Record{}).Where("id = ? AND state = ?", "r2", StatePending).Updates(upd)
			g.db.Where("record_id = ?", "r2").Delete(&RecordKeyPacket{})
			g.db.Where("record_id = ?", "r2").Delete(&InlineCiphertext{})
			g.db.Model(&Request{}).Where("id = ?", "q1").Updates(answerValues(AnswerApproved, "d?$1", fixed.UTC()))
			for _, m := range []any{&Record{}, &Request{}, &RecordKeyPacket{}, &InlineCiphertext{}} {
				if x, y := dump(t, a, m), dump(t, g, m); !reflect.DeepEqual(x, y) {
					t.Errorf("%T:\n later %q\n gorm  %q", m, x, y)
				}
			}
		})
	}
}
