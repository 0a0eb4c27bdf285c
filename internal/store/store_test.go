package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
)

func TestStore(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("ApplyCommitsAuditAndLog", func(t *testing.T) { testApply(t, b) })
			t.Run("ApplyRollsBack", func(t *testing.T) { testRollback(t, b) })
			t.Run("OneTransitionWins", func(t *testing.T) { testConcurrentTransition(t, b) })
			t.Run("UniqueIdempotencyKey", func(t *testing.T) { testIdempotencyUnique(t, b) })
			t.Run("LockKeySerializes", func(t *testing.T) { testLockKey(t, b) })
			t.Run("GuardedWritesAllOrNone", func(t *testing.T) { testGuardedWrites(t, b) })
			t.Run("DirectReadsAsGorm", func(t *testing.T) { testDirectReads(t, b) })
			t.Run("PendingRecords", func(t *testing.T) { testPendingRecords(t, b) })
		})
	}
}

func testApply(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	after := false
	id := store.NewID()
	err := s.Apply(ctx, store.Actor{Kind: store.ActorAdmin, ID: "op"}, func(tx *store.Tx) error {
		tx.Audit("user.create", "user", id)
		tx.AppendLog(store.LogChainLink, []byte("binding"))
		tx.AppendLog(store.LogApproval, []byte("second"))
		tx.AfterCommit(func() { after = true })
		if err := tx.InsertLater(&store.Party{ID: id, Name: "later", Fingerprint: "F" + id, PublicKey: []byte("k")}); err != nil {
			return err
		}
		return tx.DB.Create(&store.User{ID: id, Handle: "alice"}).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var ev store.AuditEvent
	if err := store.First(s.DB(ctx), &ev, "object_id = ?", id); err != nil {
		t.Fatal(err)
	}
	if ev.ActorKind != store.ActorAdmin || ev.ActorID != "op" || ev.Action != "user.create" || ev.Time.IsZero() {
		t.Fatalf("audit event %+v", ev)
	}
	var le store.LogEntry
	if err := store.First(s.DB(ctx), &le, "kind = ?", store.LogChainLink); err != nil || string(le.Leaf) != "binding" {
		t.Fatalf("log entry %+v, %v", le, err)
	}
	var second store.LogEntry
	if err := store.First(s.DB(ctx), &second, "kind = ?", store.LogApproval); err != nil || second.Index <= le.Index {
		t.Fatalf("log entries out of order: %d then %d (%v)", le.Index, second.Index, err)
	}
	if p, err := s.FindParty(ctx, id); err != nil || p.Name != "later" || p.CreatedAt.IsZero() {
		t.Fatalf("queued insert: %+v, %v", p, err)
	}
	if !after {
		t.Fatal("after-commit did not run")
	}
	if store.ValidID("../../etc/passwd") || !store.ValidID(id) {
		t.Fatal("ValidID")
	}
}

func testRollback(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	before, _ := s.Counts(ctx)
	boom := errors.New("boom")
	after := false
	err := s.Apply(ctx, store.Actor{Kind: store.ActorAdmin}, func(tx *store.Tx) error {
		if err := tx.DB.Create(&store.User{ID: store.NewID(), Handle: "x"}).Error; err != nil {
			return err
		}
		tx.Audit("user.create", "user", "x")
		tx.AppendLog(store.LogChainLink, []byte("x"))
		tx.AfterCommit(func() { after = true })
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Apply returned %v, want boom", err)
	}
	got, _ := s.Counts(ctx)
	for k, v := range before {
		if got[k] != v {
			t.Errorf("table %s: %d rows after a failed Apply, was %d", k, got[k], v)
		}
	}
	if after {
		t.Error("AfterCommit ran after a rollback")
	}

	// A queued insert that fails when the writes are flushed (here a
	// unique violation, with another queued insert before it) undoes the
	// transaction's immediate writes as well.
	fpr := store.NewID()
	if err := s.Apply(ctx, store.Actor{Kind: store.ActorAdmin}, func(tx *store.Tx) error {
		return tx.Insert(&store.Party{ID: store.NewID(), Name: "first", Fingerprint: fpr, PublicKey: []byte("k")})
	}); err != nil {
		t.Fatal(err)
	}
	before, _ = s.Counts(ctx)
	err = s.Apply(ctx, store.Actor{Kind: store.ActorAdmin}, func(tx *store.Tx) error {
		if err := tx.DB.Create(&store.User{ID: store.NewID(), Handle: "y"}).Error; err != nil {
			return err
		}
		if err := tx.InsertLater(&store.Party{ID: store.NewID(), Name: "ok", Fingerprint: store.NewID(), PublicKey: []byte("k")}); err != nil {
			return err
		}
		tx.Audit("party.create", "party", "dup")
		return tx.InsertLater(&store.Party{ID: store.NewID(), Name: "dup", Fingerprint: fpr, PublicKey: []byte("k")})
	})
	if !store.IsUniqueViolation(err) {
		t.Fatalf("Apply with a duplicate queued insert returned %v, want a unique violation", err)
	}
	got, _ = s.Counts(ctx)
	for k, v := range before {
		if got[k] != v {
			t.Errorf("table %s: %d rows after a failed flush, was %d", k, got[k], v)
		}
	}
}

func seedRecord(t *testing.T, s *store.Store) (store.Record, store.Request) {
	t.Helper()
	ctx := context.Background()
	u := store.User{ID: store.NewID(), Handle: "alice-" + store.NewID()[:6]}
	p := store.Party{ID: store.NewID(), Name: "lab", Fingerprint: store.NewID(), PublicKey: []byte("k")}
	key := store.NewID() + store.NewID()
	r := store.Record{ID: store.NewID(), UserID: u.ID, PartyID: p.ID, State: store.StatePending, Profile: "compat",
		CiphertextSHA256: key, BlobKey: &key, MetadataSHA256: key, ExpiresAt: time.Now().Add(time.Hour)}
	q := store.Request{ID: store.NewID(), Kind: store.KindApproval, RecordID: r.ID, UserID: u.ID, PartyID: p.ID,
		State: store.RequestOpen, ExpiresAt: time.Now().Add(time.Hour)}
	err := s.Apply(ctx, store.Actor{Kind: store.ActorParty, ID: p.ID}, func(tx *store.Tx) error {
		for _, v := range []any{&u, &p, &r, &q} {
			if err := tx.DB.Create(v).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, q
}

// testPendingRecords: the metrics' count holds the pending records alone,
// whatever became of the others.
func testPendingRecords(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	count := func(want int64) {
		t.Helper()
		if n, err := s.PendingRecords(ctx); err != nil || n != want {
			t.Fatalf("PendingRecords = %d, %v; want %d", n, err, want)
		}
	}
	count(0)
	var rs []store.Record
	for range 4 {
		r, _ := seedRecord(t, s)
		rs = append(rs, r)
	}
	count(4)
	for i, state := range []string{store.StateApproved, store.StateRejected, store.StateExpired} {
		if err := s.DB(ctx).Model(&store.Record{}).Where("id = ?", rs[i].ID).Update("state", state).Error; err != nil {
			t.Fatal(err)
		}
	}
	count(1)
}

var errConflict = errors.New("conflict")

func testConcurrentTransition(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	r, q := seedRecord(t, s)
	const n = 20
	var wg sync.WaitGroup
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- s.Apply(ctx, store.Actor{Kind: store.ActorDevice, ID: "d"}, func(tx *store.Tx) error {
				var req store.Request
				if err := store.First(tx.Locked(), &req, "id = ?", q.ID); err != nil {
					return err
				}
				if req.State != store.RequestOpen {
					return errConflict
				}
				if err := tx.DB.Model(&store.Request{}).Where("id = ?", q.ID).Updates(map[string]any{"state": store.RequestAnswered}).Error; err != nil {
					return err
				}
				if err := tx.DB.Model(&store.Record{}).Where("id = ?", r.ID).Update("state", store.StateApproved).Error; err != nil {
					return err
				}
				tx.Audit("record.approve", "record", r.ID)
				tx.AppendLog(store.LogApproval, []byte("statement"))
				return nil
			})
		}()
	}
	wg.Wait()
	close(results)
	ok, conflicts := 0, 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, errConflict):
			conflicts++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || conflicts != n-1 {
		t.Fatalf("%d transitions succeeded and %d conflicted; want 1 and %d", ok, conflicts, n-1)
	}
	var logs, audits int64
	s.DB(ctx).Model(&store.LogEntry{}).Count(&logs)
	s.DB(ctx).Model(&store.AuditEvent{}).Where("action = ?", "record.approve").Count(&audits)
	if logs != 1 || audits != 1 {
		t.Fatalf("%d log entries and %d audit events, want 1 each", logs, audits)
	}
}

func testIdempotencyUnique(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	r, _ := seedRecord(t, s)
	k := "same-key"
	mk := func() error {
		return s.Apply(ctx, store.Actor{Kind: store.ActorParty}, func(tx *store.Tx) error {
			key := store.NewID() + store.NewID()
			return tx.DB.Create(&store.Record{ID: store.NewID(), UserID: r.UserID, PartyID: r.PartyID, State: store.StatePending,
				Profile: "compat", CiphertextSHA256: key, BlobKey: &key, MetadataSHA256: key, IdempotencyKey: &k}).Error
		})
	}
	if err := mk(); err != nil {
		t.Fatal(err)
	}
	if err := mk(); !store.IsUniqueViolation(err) {
		t.Fatalf("second record with the same idempotency key: %v, want a unique violation", err)
	}
}

// testLockKey: a transaction that locks a key waits for another holding
// the same key until that one ends; another key does not wait (PostgreSQL).
func testLockKey(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	actor := store.Actor{Kind: store.ActorSystem, ID: "test"}
	locked, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.Apply(ctx, actor, func(tx *store.Tx) error {
			if err := tx.LockKey("blob:k"); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	if s.Postgres() {
		// Another key goes ahead.
		if err := s.Apply(ctx, actor, func(tx *store.Tx) error { return tx.LockKey("blob:other") }); err != nil {
			t.Fatal(err)
		}
	}
	second := make(chan error, 1)
	go func() {
		second <- s.Apply(ctx, actor, func(tx *store.Tx) error { return tx.LockKey("blob:k") })
	}()
	select {
	case err := <-second:
		t.Fatalf("the second transaction got the lock while the first held it (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second transaction never got the lock")
	}
}

// TestPoolKeepsIdleConnections: a burst of concurrent queries leaves its
// connections idle for the next one instead of closing all but two (as
// database/sql does by default), which on PostgreSQL meant a new backend
// process for nearly every request under load.
func TestPoolKeepsIdleConnections(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  store.Options
		burst int
	}{
		{"default", store.Options{}, 16},
		{"bounded", store.Options{MaxOpenConns: 8}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(filepath.Join(t.TempDir(), "k.db"), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			sqlDB, err := s.DB(ctx).DB()
			if err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 3; round++ {
				var held, release sync.WaitGroup
				release.Add(1)
				errs := make(chan error, tc.burst)
				for i := 0; i < tc.burst; i++ {
					held.Add(1)
					go func() {
						rows, err := s.DB(ctx).Raw("SELECT 1").Rows()
						held.Done()
						if err != nil {
							errs <- err
							return
						}
						release.Wait()
						errs <- rows.Close()
					}()
				}
				held.Wait()
				release.Done()
				for i := 0; i < tc.burst; i++ {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
			}
			st := sqlDB.Stats()
			if st.MaxIdleClosed != 0 || st.OpenConnections != tc.burst {
				t.Fatalf("after three bursts of %d: %d connections open, %d closed for lack of idle room", tc.burst, st.OpenConnections, st.MaxIdleClosed)
			}
		})
	}
}

// TestSQLiteWritersQueue: on SQLite, Apply calls of one store take turns
// in the process (instead of polling SQLite's lock); all of many
// concurrent ones commit, and one whose context ends while it waits
// returns that error and writes nothing.
func TestSQLiteWritersQueue(t *testing.T) {
	s := storetest.Open(t, storetest.Backends()[0], nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
				return tx.DB.Create(&store.User{ID: store.NewID(), Handle: store.NewID()}).Error
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	inside, leave, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
			close(inside)
			<-leave
			return nil
		})
	}()
	<-inside
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	ran := false
	err := s.Apply(cctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error { ran = true; return nil })
	close(leave)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("waiting writer: ran %v, error %v", ran, err)
	}
	var n int64
	if err := s.DB(ctx).Model(&store.User{}).Count(&n).Error; err != nil || n != 32 {
		t.Fatalf("%d users, %v", n, err)
	}
}

// TestGrantRecordPartyIndex: a party's grant on a record (the party's
// record, grant and content routes) is found through one index on both
// columns, not through all of the party's grants.
func TestGrantRecordPartyIndex(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s := storetest.Open(t, b, nil)
			if !s.DB(context.Background()).Migrator().HasIndex(&store.Grant{}, "idx_grants_record_party") {
				t.Fatal("no index idx_grants_record_party")
			}
		})
	}
}

// testGuardedWrites: queued writes with a guarded update among them run
// all or none: a guard that finds its row changed (here the request,
// answered meanwhile, while the record's guard still holds) fails the
// change with ErrUnchanged, and the record's update, the deletion and the
// insert queued with it are undone.
func testGuardedWrites(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	actor := store.Actor{Kind: store.ActorDevice, ID: "d"}
	// An answer is written only for an active device (AnswerOpenRequest).
	if err := s.DB(ctx).Create(&store.Device{ID: "d", UserID: "u", Fingerprint: "fd", PublicKey: []byte{1}, Status: store.DeviceActive}).Error; err != nil {
		t.Fatal(err)
	}
	decide := func(tx *store.Tx, r store.Record, q store.Request) error {
		if err := tx.DecidePendingRecord(r.ID, store.Decision{State: store.StateApproved, Statement: []byte("s"), Signature: []byte("g"), DeviceID: "d",
			UserID: r.UserID, SessionKeyID: r.CiphertextSHA256}); err != nil {
			return err
		}
		if err := tx.AnswerOpenRequest(q.ID, store.AnswerApproved, "d"); err != nil {
			return err
		}
		tx.Audit("record.approve", "record", r.ID)
		tx.AppendLog(store.LogApproval, []byte("statement"))
		return tx.Flush()
	}
	for name, change := range map[string]func(context.Context, store.Actor, func(*store.Tx) error) error{"Apply": s.Apply, "Change": s.Change} {
		t.Run(name, func(t *testing.T) {
			// The request was answered meanwhile: nothing is written.
			r, q := seedRecord(t, s)
			if err := s.Apply(ctx, actor, func(tx *store.Tx) error {
				return tx.AnswerRequest(q.ID, store.AnswerApproved, "d")
			}); err != nil {
				t.Fatal(err)
			}
			before, _ := s.Counts(ctx)
			after := false
			err := change(ctx, actor, func(tx *store.Tx) error {
				tx.AfterCommit(func() { after = true })
				return decide(tx, r, q)
			})
			if !errors.Is(err, store.ErrUnchanged) || after {
				t.Fatalf("%s: %v (after-commit ran: %v), want ErrUnchanged", name, err, after)
			}
			now, _ := s.Counts(ctx)
			for k, v := range before {
				if now[k] != v {
					t.Errorf("table %s: %d rows, was %d", k, now[k], v)
				}
			}
			if got, err := s.FindRecord(ctx, r.ID); err != nil || got.State != store.StatePending || got.BlobKey == nil {
				t.Fatalf("record after the refused change: %+v, %v", got, err)
			}
			// Both guards hold: everything is written.
			r, q = seedRecord(t, s)
			before, _ = s.Counts(ctx)
			if err := change(ctx, actor, func(tx *store.Tx) error {
				tx.AfterCommit(func() { after = true })
				return decide(tx, r, q)
			}); err != nil || !after {
				t.Fatalf("%s: %v (after-commit ran: %v)", name, err, after)
			}
			now, _ = s.Counts(ctx)
			for _, table := range []string{"audit_events", "log_entries", "approved_session_keys"} {
				if now[table] != before[table]+1 {
					t.Errorf("table %s: %d rows, was %d, want one more", table, now[table], before[table])
				}
			}
			if got, err := s.FindRecord(ctx, r.ID); err != nil || got.State != store.StateApproved {
				t.Fatalf("record after the change: %+v, %v", got, err)
			}
			if got, err := s.ApprovedWithSessionKey(ctx, r.UserID, r.CiphertextSHA256); err != nil || len(got) != 1 || got[0].ID != r.ID {
				t.Fatalf("approved with its session key: %v, %v", got, err)
			}
			if got, err := s.FindRequest(ctx, q.ID); err != nil || got.State != store.RequestAnswered {
				t.Fatalf("request after the change: %+v, %v", got, err)
			}
		})
	}
}

// testDirectReads: the reads that bypass gorm's query pipeline
// (direct.go) give the rows exactly as gorm's own reads do: NULL columns,
// times, byte columns, booleans, and a token's expiry.
func testDirectReads(t *testing.T, b storetest.Backend) {
	s := storetest.Open(t, b, nil)
	ctx := context.Background()
	r, q := seedRecord(t, s)
	now := time.Now().UTC().Truncate(time.Second)
	d := store.Device{ID: store.NewID(), UserID: r.UserID, Fingerprint: store.NewID(), PublicKey: []byte("key"),
		Status: store.DeviceActive, PushKind: "fcm", PushToken: "tok", PushDead: true, RevokedAt: &now}
	kps := []store.RecordKeyPacket{{RecordID: r.ID, DeviceID: d.ID, Fingerprint: "F1", Packet: []byte{1, 2, 0, 3}},
		{RecordID: r.ID, Recovery: true, Fingerprint: "F2", Packet: []byte{4}}}
	hash := store.NewID() + store.NewID()
	err := s.Apply(ctx, store.Actor{Kind: store.ActorAdmin}, func(tx *store.Tx) error {
		for _, v := range []any{&d, &kps, &store.Token{Hash: hash, SubjectKind: store.ActorDevice, SubjectID: d.ID, ExpiresAt: now.Add(time.Hour)}} {
			if err := tx.Insert(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	same := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n direct %+v\n gorm   %+v", what, got, want)
		}
	}
	rr, err := s.FindRecordRequest(ctx, q.ID)
	if err != nil {
		t.Fatal(err)
	}
	// gorm's own reads are the reference.
	var wantRec store.Record
	var wantReq store.Request
	var wantParty store.Party
	var wantDev store.Device
	var wantUser store.User
	for _, w := range []struct {
		dst any
		id  string
	}{{&wantRec, r.ID}, {&wantReq, q.ID}, {&wantParty, r.PartyID}, {&wantDev, d.ID}, {&wantUser, r.UserID}} {
		if err := store.First(s.DB(ctx), w.dst, "id = ?", w.id); err != nil {
			t.Fatal(err)
		}
	}
	same("record", rr.Record, wantRec)
	same("request", rr.Request, wantReq)
	same("submitter", rr.Submitter, wantParty)
	same("requester", rr.Requester, wantParty)
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"FindRecord", must(s.FindRecord(ctx, r.ID)), wantRec},
		{"FindRequest", must(s.FindRequest(ctx, q.ID)), wantReq},
		{"FindParty", must(s.FindParty(ctx, r.PartyID)), wantParty},
		{"FindDevice", must(s.FindDevice(ctx, d.ID)), wantDev},
	} {
		same(c.what, c.got, c.want)
	}
	if u, ds, err := s.UserWithActiveDevices(ctx, r.UserID); err != nil || len(ds) != 1 {
		t.Errorf("UserWithActiveDevices: %d, %v", len(ds), err)
	} else {
		same("UserWithActiveDevices: user", *u, wantUser)
		same("UserWithActiveDevices: device", ds[0], wantDev)
	}
	// A user without an active device, and no user at all.
	if err := s.DB(ctx).Exec("UPDATE devices SET status = ? WHERE id = ?", store.DeviceRevoked, d.ID).Error; err != nil {
		t.Fatal(err)
	}
	if u, ds, err := s.UserWithActiveDevices(ctx, r.UserID); err != nil || u.ID != r.UserID || ds == nil || len(ds) != 0 {
		t.Errorf("UserWithActiveDevices after the revocation: %+v, %v devices, %v", u, ds, err)
	}
	if got, ds, err := s.RecordWithDevices(ctx, r.ID); err != nil || got.ID != r.ID || ds == nil || len(ds) != 0 {
		t.Errorf("RecordWithDevices after the revocation: %+v, %v devices, %v", got, ds, err)
	}
	if err := s.DB(ctx).Exec("UPDATE devices SET status = ? WHERE id = ?", store.DeviceActive, d.ID).Error; err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UserWithActiveDevices(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserWithActiveDevices of no user: %v, want ErrNotFound", err)
	}
	// UserKeys: the user, its active devices and its current epoch's links
	// by seq (inserted out of order, and one of another epoch).
	links := []store.ChainLink{
		{ID: store.NewID(), UserID: r.UserID, Epoch: 0, Seq: 1, Statement: []byte("s1"), Signature: []byte("g1"), CreatedAt: now},
		{ID: store.NewID(), UserID: r.UserID, Epoch: 1, Seq: 0, Statement: []byte("other epoch"), Signature: []byte("g"), CreatedAt: now},
		{ID: store.NewID(), UserID: r.UserID, Epoch: 0, Seq: 0, Statement: []byte("s0"), Signature: []byte("g0"), PublicKey: []byte("k"), CreatedAt: now},
	}
	if err := s.DB(ctx).Create(&links).Error; err != nil {
		t.Fatal(err)
	}
	wantLinks, err := store.Chain(s.DB(ctx), r.UserID, 0)
	if err != nil || len(wantLinks) != 2 || wantLinks[0].Seq != 0 {
		t.Fatalf("gorm's chain: %+v, %v", wantLinks, err)
	}
	if u, ds, ls, err := s.UserKeys(ctx, r.UserID); err != nil || len(ds) != 1 {
		t.Errorf("UserKeys: %d devices, %v", len(ds), err)
	} else {
		same("UserKeys: user", *u, wantUser)
		same("UserKeys: device", ds[0], wantDev)
		same("UserKeys: links", ls, wantLinks)
	}
	if _, _, _, err := s.UserKeys(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UserKeys of no user: %v, want ErrNotFound", err)
	}
	// One statement reads the user, its devices in creation order and its
	// links, also with several devices, and with none.
	d2 := store.Device{ID: "0" + store.NewID()[1:], UserID: r.UserID, Fingerprint: store.NewID(), PublicKey: []byte("k2"),
		Status: store.DeviceActive, CreatedAt: now.Add(time.Second)}
	if err := s.DB(ctx).Create(&d2).Error; err != nil {
		t.Fatal(err)
	}
	if _, ds, ls, err := s.UserKeys(ctx, r.UserID); err != nil || len(ds) != 2 || ds[0].ID != d.ID || ds[1].ID != d2.ID || len(ls) != 2 {
		t.Errorf("UserKeys with two devices: %v devices, %d links, %v", ds, len(ls), err)
	}
	if err := s.DB(ctx).Exec("UPDATE devices SET status = ? WHERE user_id = ?", store.DeviceRevoked, r.UserID).Error; err != nil {
		t.Fatal(err)
	}
	n0 := s.Statements()
	if u, ds, ls, err := s.UserKeys(ctx, r.UserID); err != nil || u.ID != r.UserID || ds == nil || len(ds) != 0 {
		t.Errorf("UserKeys with no active device: %+v, %v, %v", u, ds, err)
	} else {
		same("UserKeys, no device: links", ls, wantLinks)
	}
	if n := s.Statements() - n0; n != 1 {
		t.Errorf("UserKeys ran %d statements, want 1", n)
	}
	if err := s.DB(ctx).Exec("UPDATE devices SET status = ? WHERE id = ?", store.DeviceActive, d.ID).Error; err != nil {
		t.Fatal(err)
	}
	if err := s.DB(ctx).Delete(&d2).Error; err != nil {
		t.Fatal(err)
	}
	// FindRecordWithDecider: no decider, then d.
	if got, fpr, err := s.FindRecordWithDecider(ctx, r.ID); err != nil || fpr != "" {
		t.Errorf("FindRecordWithDecider, undecided: %q, %v", fpr, err)
	} else {
		same("FindRecordWithDecider: record", *got, wantRec)
	}
	if err := s.DB(ctx).Exec("UPDATE records SET decided_by = ? WHERE id = ?", d.ID, r.ID).Error; err != nil {
		t.Fatal(err)
	}
	if got, fpr, err := s.FindRecordWithDecider(ctx, r.ID); err != nil || fpr != d.Fingerprint || got.DecidedBy != d.ID {
		t.Errorf("FindRecordWithDecider, decided by %s: %q, %+v, %v", d.ID, fpr, got, err)
	}
	if err := s.DB(ctx).Exec("UPDATE records SET decided_by = ? WHERE id = ?", wantRec.DecidedBy, r.ID).Error; err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.FindRecordWithDecider(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FindRecordWithDecider of no record: %v, want ErrNotFound", err)
	}
	if ds, err := s.DevicesToNotify(ctx, r.UserID); err != nil || len(ds) != 1 {
		t.Errorf("DevicesToNotify for the user: %+v, %v", ds, err)
	} else {
		same("DevicesToNotify", ds[0], wantDev)
	}
	if got, ds, err := s.RecordWithDevices(ctx, r.ID); err != nil || len(ds) != 1 {
		t.Errorf("RecordWithDevices: %d devices, %v", len(ds), err)
	} else {
		same("RecordWithDevices: record", *got, wantRec)
		same("RecordWithDevices: device", ds[0], wantDev)
	}
	if _, _, err := s.RecordWithDevices(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordWithDevices of no record: %v, want ErrNotFound", err)
	}
	var wantKPs []store.RecordKeyPacket
	if err := s.DB(ctx).Where("record_id = ?", r.ID).Order("id").Find(&wantKPs).Error; err != nil {
		t.Fatal(err)
	}
	same("FindRecordRequest: key packets", rr.KeyPackets, wantKPs)
	// A record that lost its key packets (a tombstone) still has its
	// request, with none.
	if err := s.DB(ctx).Exec("DELETE FROM record_key_packets WHERE record_id = ?", r.ID).Error; err != nil {
		t.Fatal(err)
	}
	if rr, err := s.FindRecordRequest(ctx, q.ID); err != nil || rr.Request.ID != q.ID || rr.KeyPackets == nil || len(rr.KeyPackets) != 0 {
		t.Errorf("FindRecordRequest without key packets: %+v, %v", rr, err)
	}
	gotDev, exp, err := s.DeviceByToken(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	same("device", *gotDev, wantDev)
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("token expiry %v, want %v", exp, now.Add(time.Hour))
	}
	if _, _, err := s.PartyByToken(ctx, hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a device token as a party's: %v, want ErrNotFound", err)
	}
	if _, err := s.FindRecordRequest(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("no such request: %v", err)
	}
	// Many packets come in order, each once; a request whose party is gone
	// is not found, whatever packets its record has.
	more := make([]store.RecordKeyPacket, 5)
	for i := range more {
		more[i] = store.RecordKeyPacket{RecordID: r.ID, DeviceID: store.NewID(), Fingerprint: fmt.Sprint("F", i), Packet: []byte{byte(i)}}
	}
	if err := s.DB(ctx).Create(&more).Error; err != nil {
		t.Fatal(err)
	}
	if rr, err := s.FindRecordRequest(ctx, q.ID); err != nil || len(rr.KeyPackets) != len(more) {
		t.Errorf("FindRecordRequest with %d packets: %+v, %v", len(more), rr, err)
	} else {
		for i := range more {
			if rr.KeyPackets[i].ID != more[i].ID || !bytes.Equal(rr.KeyPackets[i].Packet, more[i].Packet) {
				t.Errorf("packet %d: %+v, want %+v", i, rr.KeyPackets[i], more[i])
			}
		}
		same("FindRecordRequest with many packets: record", rr.Record.ID, r.ID)
	}
	orphan := store.Request{ID: store.NewID(), Kind: store.KindAccess, RecordID: r.ID, UserID: r.UserID, PartyID: store.NewID(),
		State: store.RequestOpen, ExpiresAt: now.Add(time.Hour)}
	if err := s.DB(ctx).Create(&orphan).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindRecordRequest(ctx, orphan.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a request whose party is gone: %v, want ErrNotFound", err)
	}
}

// must returns the value a lookup found, dereferenced (a zero value on an
// error, which the comparison then shows).
func must[T any](v *T, err error) T {
	if err != nil || v == nil {
		var zero T
		return zero
	}
	return *v
}

// TestSQLiteTimeFormat: times are stored as the text the SQLite driver
// before modernc.org/sqlite wrote (glebarez/go-sqlite's default,
// "2006-01-02 15:04:05.999999999-07:00"), so a database it wrote keeps
// comparing and sorting its times correctly against the values bound now.
func TestSQLiteTimeFormat(t *testing.T) {
	s := storetest.Open(t, storetest.Backends()[0], nil)
	r, _ := seedRecord(t, s)
	var raw, kind string
	err := s.DB(context.Background()).Raw("SELECT hex(expires_at), typeof(expires_at) FROM records WHERE id = ?", r.ID).Row().Scan(&raw, &kind)
	if err != nil {
		t.Fatal(err)
	}
	const glebarez = "2006-01-02 15:04:05.999999999-07:00"
	text, err := hex.DecodeString(raw) // hex: the driver would turn the text into a time.Time
	if err != nil {
		t.Fatal(err)
	}
	raw = string(text)
	got, err := time.Parse(glebarez, raw)
	if err != nil || kind != "text" || !got.Equal(r.ExpiresAt) || raw != r.ExpiresAt.UTC().Format(glebarez) {
		t.Fatalf("expires_at stored as %s %q (%v), want %q", kind, raw, err, r.ExpiresAt.UTC().Format(glebarez))
	}
}
