package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
)

// fixture is a small world: users alice and bob, parties lab and bank,
// alice's devices d1 (active) and d2 (revoked) and bob's d3, and records,
// requests and grants in every state the queries tell apart. Rows are
// created a minute apart in the order listed, so newest-first lists have
// one right order.
type fixture struct {
	s                   *store.Store
	now                 time.Time
	alice, bob          store.User
	lab, bank           store.Party
	d1, d2, d3          store.Device
	r1, r2, r3, r4, rb  store.Record // r1-r4 alice's (r4 by bank), rb bob's
	qOpen, qOther       store.Request
	qOld, qDone, qLink  store.Request
	qBob, qAccess       store.Request
	gValid, gOld, gGone store.Grant
}

func newFixture(t *testing.T, b storetest.Backend) *fixture {
	t.Helper()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f := &fixture{s: storetest.Open(t, b, func() time.Time { return now }), now: now}
	at := now.Add(-time.Hour)
	next := func() time.Time { at = at.Add(time.Minute); return at }
	hex := func() string { return store.NewID() + store.NewID() }
	f.alice = store.User{ID: store.NewID(), Handle: "alice", CreatedAt: next()}
	f.bob = store.User{ID: store.NewID(), Handle: "bob", CreatedAt: next()}
	f.lab = store.Party{ID: store.NewID(), Name: "lab", Fingerprint: "LAB", PublicKey: []byte("k"), CreatedAt: next()}
	f.bank = store.Party{ID: store.NewID(), Name: "bank", Fingerprint: "BANK", PublicKey: []byte("k"), CreatedAt: next()}
	dev := func(u store.User, fpr, status string) store.Device {
		return store.Device{ID: store.NewID(), UserID: u.ID, Fingerprint: fpr, PublicKey: []byte("k"), Status: status, CreatedAt: next()}
	}
	f.d1, f.d2, f.d3 = dev(f.alice, "D1", store.DeviceActive), dev(f.alice, "D2", store.DeviceRevoked), dev(f.bob, "D3", store.DeviceActive)
	rec := func(u store.User, p store.Party, state, idem string) store.Record {
		k := hex()
		r := store.Record{ID: store.NewID(), UserID: u.ID, PartyID: p.ID, State: state, Profile: "compat",
			CiphertextSHA256: k, BlobKey: &k, MetadataSHA256: k, CreatedAt: next(), ExpiresAt: now.Add(time.Hour)}
		if idem != "" {
			r.IdempotencyKey = &idem
		}
		return r
	}
	f.r1 = rec(f.alice, f.lab, store.StatePending, "k1")
	f.r2 = rec(f.alice, f.lab, store.StateApproved, "")
	f.r2.DecidedBy = f.d1.ID
	f.r3 = rec(f.alice, f.lab, store.StatePending, "")
	f.r3.ExpiresAt = now.Add(-time.Minute) // pending life over
	f.r4 = rec(f.alice, f.bank, store.StatePending, "k1")
	f.rb = rec(f.bob, f.lab, store.StatePending, "")
	kps := []store.RecordKeyPacket{
		{RecordID: f.r1.ID, DeviceID: f.d1.ID, Fingerprint: "D1", Packet: []byte("p")},
		{RecordID: f.r2.ID, DeviceID: f.d1.ID, Fingerprint: "D1", Packet: []byte("p")},
		{RecordID: f.r3.ID, DeviceID: f.d1.ID, Fingerprint: "D1", Packet: []byte("p")},
		{RecordID: f.r4.ID, DeviceID: f.d2.ID, Fingerprint: "D2", Packet: []byte("p")},
		{RecordID: f.rb.ID, DeviceID: f.d3.ID, Fingerprint: "D3", Packet: []byte("p")},
	}
	req := func(kind string, r store.Record, u store.User, partyID, state string, expires time.Time) store.Request {
		return store.Request{ID: store.NewID(), Kind: kind, RecordID: r.ID, UserID: u.ID, PartyID: partyID, State: state,
			CreatedAt: next(), ExpiresAt: expires}
	}
	later := now.Add(time.Hour)
	f.qOpen = req(store.KindApproval, f.r1, f.alice, f.lab.ID, store.RequestOpen, later)
	f.qOther = req(store.KindApproval, f.r4, f.alice, f.bank.ID, store.RequestOpen, later) // no packet for d1
	f.qOld = req(store.KindApproval, f.r3, f.alice, f.lab.ID, store.RequestOpen, now.Add(-time.Second))
	f.qDone = req(store.KindApproval, f.r2, f.alice, f.lab.ID, store.RequestAnswered, later)
	f.qLink = req(store.KindDevice, store.Record{}, f.alice, "", store.RequestOpen, later)
	f.qBob = req(store.KindApproval, f.rb, f.bob, f.lab.ID, store.RequestOpen, later)
	f.qAccess = req(store.KindAccess, f.r2, f.alice, f.bank.ID, store.RequestAnswered, later)
	f.qAccess.Answer = store.AnswerGranted
	idem := "a1"
	f.qAccess.IdempotencyKey = &idem
	grant := func(p store.Party, q store.Request, expires time.Time, revoked bool) store.Grant {
		g := store.Grant{ID: store.NewID(), RecordID: f.r2.ID, PartyID: p.ID, UserID: f.alice.ID, RequestID: q.ID, DeviceID: f.d1.ID,
			KeyPacket: []byte("p"), Statement: []byte("s"), Signature: []byte("s"), CreatedAt: next(), ExpiresAt: expires}
		if revoked {
			g.RevokedAt = &now
		}
		return g
	}
	f.gOld = grant(f.bank, store.Request{ID: store.NewID()}, later, false)
	f.gValid = grant(f.bank, f.qAccess, later, false)
	f.gGone = grant(f.lab, store.Request{ID: store.NewID()}, later, true)
	err := f.s.Apply(context.Background(), store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
		for _, v := range []any{&f.alice, &f.bob, &f.lab, &f.bank, &f.d1, &f.d2, &f.d3, &f.r1, &f.r2, &f.r3, &f.r4, &f.rb, &kps,
			&f.qOpen, &f.qOther, &f.qOld, &f.qDone, &f.qLink, &f.qBob, &f.qAccess, &f.gOld, &f.gValid, &f.gGone} {
			if err := tx.Insert(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func recordIDs(rs []store.Record) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestStoreQueries(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b)
			ctx := context.Background()
			s := f.s
			t.Run("ListRecords", func(t *testing.T) {
				k1, none := "k1", "none"
				for _, tc := range []struct {
					name   string
					filter store.RecordFilter
					want   []store.Record
				}{
					{"user", store.RecordFilter{UserID: f.alice.ID}, []store.Record{f.r4, f.r3, f.r2, f.r1}},
					{"party", store.RecordFilter{PartyID: f.lab.ID}, []store.Record{f.rb, f.r3, f.r2, f.r1}},
					{"party and key", store.RecordFilter{PartyID: f.lab.ID, IdempotencyKey: &k1}, []store.Record{f.r1}},
					{"unknown key", store.RecordFilter{PartyID: f.lab.ID, IdempotencyKey: &none}, nil},
					{"limit", store.RecordFilter{UserID: f.alice.ID, Page: store.Page{Limit: 2}}, []store.Record{f.r4, f.r3}},
					{"nobody's", store.RecordFilter{UserID: store.NewID()}, nil},
				} {
					got, _, err := s.ListRecords(ctx, tc.filter)
					if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					if fmt.Sprint(recordIDs(got)) != fmt.Sprint(recordIDs(tc.want)) {
						t.Errorf("%s: %v, want %v", tc.name, recordIDs(got), recordIDs(tc.want))
					}
				}
				if _, _, err := s.ListRecords(ctx, store.RecordFilter{}); err == nil {
					t.Error("a list of every record was served")
				}
			})
			t.Run("ListGrants", func(t *testing.T) {
				for _, tc := range []struct {
					name   string
					filter store.GrantFilter
					want   []string
				}{
					{"user", store.GrantFilter{UserID: f.alice.ID}, []string{f.gGone.ID, f.gValid.ID, f.gOld.ID}},
					{"party", store.GrantFilter{PartyID: f.bank.ID}, []string{f.gValid.ID, f.gOld.ID}},
					{"limit", store.GrantFilter{UserID: f.alice.ID, Page: store.Page{Limit: 1}}, []string{f.gGone.ID}},
					{"nobody's", store.GrantFilter{PartyID: store.NewID()}, nil},
				} {
					got, _, err := s.ListGrants(ctx, tc.filter)
					if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					var ids []string
					for _, g := range got {
						ids = append(ids, g.ID)
					}
					if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
						t.Errorf("%s: %v, want %v", tc.name, ids, tc.want)
					}
				}
				if _, _, err := s.ListGrants(ctx, store.GrantFilter{}); err == nil {
					t.Error("a list of every grant was served")
				}
			})
			t.Run("Fingerprints", func(t *testing.T) {
				got, err := s.DeviceFingerprints(ctx, f.d1.ID, "", f.d1.ID, f.d3.ID, store.NewID())
				if err != nil || fmt.Sprint(got) != fmt.Sprint(map[string]string{f.d1.ID: "D1", f.d3.ID: "D3"}) {
					t.Errorf("device fingerprints %v, %v", got, err)
				}
				got, err = s.PartyFingerprints(ctx, f.lab.ID, f.bank.ID)
				if err != nil || fmt.Sprint(got) != fmt.Sprint(map[string]string{f.lab.ID: "LAB", f.bank.ID: "BANK"}) {
					t.Errorf("party fingerprints %v, %v", got, err)
				}
				if got, err := s.DeviceFingerprints(ctx); err != nil || len(got) != 0 {
					t.Errorf("no ids: %v, %v", got, err)
				}
			})
			t.Run("OpenRequestsForDevice", func(t *testing.T) {
				for _, tc := range []struct {
					name string
					dev  store.Device
					want []string
				}{
					// Not qOther (no key packet for d1), qOld (expired),
					// qDone (answered), qBob (another user).
					{"d1", f.d1, []string{f.qOpen.ID, f.qLink.ID}},
					{"d3", f.d3, []string{f.qBob.ID}},
				} {
					got, _, err := s.OpenRequestsForDevice(ctx, tc.dev.UserID, tc.dev.ID, f.now, store.Page{Limit: 100})
					if err != nil {
						t.Fatal(err)
					}
					var ids []string
					for _, q := range got {
						ids = append(ids, q.ID)
					}
					if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
						t.Errorf("%s: %v, want %v", tc.name, ids, tc.want)
					}
				}
			})
			t.Run("Lookups", func(t *testing.T) {
				for _, tc := range []struct {
					name   string
					lookup func() (string, error)
					want   string // "" for ErrNotFound
				}{
					{"valid grant", func() (string, error) { g, err := s.ValidGrant(ctx, f.r2.ID, f.bank.ID, f.now); return idOf(g, err) }, f.gValid.ID},
					{"revoked grant", func() (string, error) { g, err := s.ValidGrant(ctx, f.r2.ID, f.lab.ID, f.now); return idOf(g, err) }, ""},
					{"expired grants", func() (string, error) {
						g, err := s.ValidGrant(ctx, f.r2.ID, f.bank.ID, f.now.Add(2*time.Hour))
						return idOf(g, err)
					}, ""},
					{"grant of request", func() (string, error) { g, err := s.GrantOfRequest(ctx, f.qAccess.ID); return idOf(g, err) }, f.gValid.ID},
					{"newest access request", func() (string, error) {
						q, err := s.NewestAccessRequest(ctx, f.r2.ID, f.bank.ID)
						return idOf(q, err)
					}, f.qAccess.ID},
					{"no access request", func() (string, error) { q, err := s.NewestAccessRequest(ctx, f.r2.ID, f.lab.ID); return idOf(q, err) }, ""},
					{"record by key", func() (string, error) { r, err := s.RecordByIdempotencyKey(ctx, f.bank.ID, "k1"); return idOf(r, err) }, f.r4.ID},
					{"request by key", func() (string, error) { q, err := s.RequestByIdempotencyKey(ctx, f.bank.ID, "a1"); return idOf(q, err) }, f.qAccess.ID},
					{"other party's key", func() (string, error) { q, err := s.RequestByIdempotencyKey(ctx, f.lab.ID, "a1"); return idOf(q, err) }, ""},
					{"device by key", func() (string, error) { d, err := s.DeviceByFingerprint(ctx, "D2"); return idOf(d, err) }, f.d2.ID},
					{"party by key", func() (string, error) { p, err := s.PartyByFingerprint(ctx, "LAB"); return idOf(p, err) }, f.lab.ID},
					{"user", func() (string, error) { u, err := s.FindUser(ctx, f.bob.ID); return idOf(u, err) }, f.bob.ID},
					{"user by handle", func() (string, error) { u, err := store.UserByHandle(s.DB(ctx), "alice"); return idOf(u, err) }, f.alice.ID},
					{"no user", func() (string, error) { u, err := s.FindUser(ctx, store.NewID()); return idOf(u, err) }, ""},
				} {
					got, err := tc.lookup()
					if tc.want == "" {
						if !errors.Is(err, store.ErrNotFound) {
							t.Errorf("%s: %q, %v; want ErrNotFound", tc.name, got, err)
						}
					} else if err != nil || got != tc.want {
						t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
					}
				}
			})
			t.Run("Devices", func(t *testing.T) {
				active, err := s.DeviceActive(ctx, f.d2.ID)
				if err != nil || active {
					t.Errorf("revoked device active: %v, %v", active, err)
				}
				if active, err := s.DeviceActive(ctx, store.NewID()); err != nil || active {
					t.Errorf("unknown device active: %v, %v", active, err)
				}
				users, _, err := s.ListUsers(ctx, store.Page{})
				if err != nil || len(users) != 2 || users[0].ID != f.alice.ID || users[0].ActiveDevices != 1 || users[1].ActiveDevices != 1 {
					t.Errorf("users %+v, %v", users, err)
				}
				all, err := s.ListDevices(ctx, f.alice.ID)
				if err != nil || len(all) != 2 {
					t.Errorf("alice's devices %d, %v", len(all), err)
				}
				_, ds, err := s.RecordWithDevices(ctx, f.r4.ID)
				if err != nil || len(ds) != 0 {
					t.Errorf("a revoked device is notified: %d, %v", len(ds), err)
				}
				ds, err = s.DevicesToNotify(ctx, f.alice.ID)
				if err != nil || len(ds) != 1 || ds[0].ID != f.d1.ID {
					t.Errorf("link request goes to %+v, %v", ds, err)
				}
				use, err := store.KeyUseOf(s.DB(ctx), "D2")
				if err != nil || use != (store.KeyUse{Device: true}) {
					t.Errorf("key use of a revoked device's key: %+v, %v", use, err)
				}
				if use, _ := store.KeyUseOf(s.DB(ctx), "LAB"); use != (store.KeyUse{Party: true}) {
					t.Errorf("key use of a party's key: %+v", use)
				}
			})
			t.Run("ExpiredPendingRecords", func(t *testing.T) {
				got, err := s.ExpiredPendingRecords(ctx, f.now, 10)
				if err != nil || fmt.Sprint(recordIDs(got)) != fmt.Sprint([]string{f.r3.ID}) {
					t.Errorf("expired pending records %v, %v", recordIDs(got), err)
				}
			})
		})
	}
}

func idOf[T any](v *T, err error) (string, error) {
	if err != nil {
		return "", err
	}
	switch x := any(v).(type) {
	case *store.Grant:
		return x.ID, nil
	case *store.Request:
		return x.ID, nil
	case *store.Record:
		return x.ID, nil
	case *store.Device:
		return x.ID, nil
	case *store.Party:
		return x.ID, nil
	case *store.User:
		return x.ID, nil
	}
	return "", fmt.Errorf("idOf: %T", v)
}

// TestStoreWrites: the transaction methods change what they say and
// nothing else, and the one-shot ones (nonces, codes, revocations) work
// once.
func TestStoreWrites(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b)
			ctx := context.Background()
			s := f.s
			apply := func(fn func(tx *store.Tx) error) {
				t.Helper()
				if err := s.Apply(ctx, store.Actor{Kind: store.ActorSystem}, fn); err != nil {
					t.Fatal(err)
				}
			}
			// ExpireRecord: r3's pending life is over; r1's is not; r2 is approved.
			for _, tc := range []struct {
				rec     store.Record
				expired bool
			}{{f.r3, true}, {f.r1, false}, {f.r2, false}} {
				apply(func(tx *store.Tx) error {
					expired, key, err := tx.ExpireRecord(tc.rec.ID)
					if err == nil && (expired != tc.expired || (expired && (key == nil || *key != *tc.rec.BlobKey))) {
						t.Errorf("record %s: expired %v (blob %v), want %v", tc.rec.ID, expired, key, tc.expired)
					}
					return err
				})
				got, _ := s.FindRecord(ctx, tc.rec.ID)
				kps := keyPacketCount(t, s, tc.rec.ID)
				if tc.expired != (got.State == store.StateExpired && got.BlobKey == nil && kps == 0) {
					t.Errorf("record %s after ExpireRecord: state %s, blob %v, %d key packets", tc.rec.ID, got.State, got.BlobKey, kps)
				}
			}
			if q, _ := s.FindRequest(ctx, f.qOld.ID); q.State != store.RequestExpired {
				t.Errorf("the expired record's open request is %s", q.State)
			}
			// ExpireStale: of the open requests only those past expiry.
			apply(func(tx *store.Tx) error {
				n, err := tx.ExpireStale(f.now)
				if err == nil && n != 0 { // qOld went with its record
					t.Errorf("ExpireStale expired %d requests, want 0", n)
				}
				return err
			})
			if q, _ := s.FindRequest(ctx, f.qOpen.ID); q.State != store.RequestOpen {
				t.Errorf("an unexpired request became %s", q.State)
			}
			// DecidePendingRecord: a rejection leaves a tombstone; a second
			// decision, or a second answer, finds nothing to change.
			decide := func(state, by string) error {
				return s.Apply(ctx, store.Actor{Kind: store.ActorDevice, ID: by}, func(tx *store.Tx) error {
					if err := tx.DecidePendingRecord(f.r1.ID, store.Decision{State: state, Statement: []byte("st"), Signature: []byte("sig"), DeviceID: by}); err != nil {
						return err
					}
					return tx.AnswerOpenRequest(f.qOpen.ID, store.AnswerRejected, by)
				})
			}
			if err := decide(store.StateRejected, f.d1.ID); err != nil {
				t.Errorf("the first decision: %v", err)
			}
			before, _ := s.Counts(ctx)
			if err := decide(store.StateApproved, "other"); !errors.Is(err, store.ErrUnchanged) {
				t.Errorf("a second decision: %v, want ErrUnchanged", err)
			}
			if after, _ := s.Counts(ctx); !maps.Equal(before, after) {
				t.Errorf("a refused decision changed the tables: %v, was %v", after, before)
			}
			r1, _ := s.FindRecord(ctx, f.r1.ID)
			kps := keyPacketCount(t, s, f.r1.ID)
			q, _ := s.FindRequest(ctx, f.qOpen.ID)
			if r1.State != store.StateRejected || r1.BlobKey != nil || kps != 0 || r1.DecidedBy != f.d1.ID || r1.DecidedAt == nil ||
				q.State != store.RequestAnswered || q.Answer != store.AnswerRejected || q.AnsweredBy != f.d1.ID {
				t.Errorf("after a rejection: record %+v (%d key packets), request %+v", r1, kps, q)
			}
			// One-shot writes.
			n := store.Nonce{Hash: store.NewID(), Fingerprint: "D1", ExpiresAt: f.now.Add(time.Minute)}
			ec := store.EnrollmentCode{ID: store.NewID(), UserID: f.bob.ID, CodeHash: store.NewID(), ExpiresAt: f.now.Add(time.Minute)}
			apply(func(tx *store.Tx) error { return errors.Join(tx.Insert(&n), tx.Insert(&ec)) })
			var results []bool
			for range 2 {
				apply(func(tx *store.Tx) error {
					nonce, err1 := tx.UseNonce(n.Hash)
					code, err2 := tx.UseEnrollmentCode(ec.ID)
					_, _, revoked, err3 := tx.RevokeGrant(f.gValid.ID, f.alice.ID)
					results = append(results, nonce, code, revoked)
					return errors.Join(err1, err2, err3)
				})
			}
			if want := []bool{true, true, true, false, false, false}; !slices.Equal(results, want) {
				t.Errorf("nonce, code, revocation twice: %v, want %v", results, want)
			}
			err := s.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
				_, _, _, err := tx.RevokeGrant(f.gOld.ID, f.bob.ID)
				return err
			})
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("revoking another user's grant: %v", err)
			}
			// ResetChain and device revocation.
			apply(func(tx *store.Tx) error {
				ids, err := tx.ActiveDeviceIDs(f.alice.ID, "")
				if err != nil {
					return err
				}
				if !slices.Equal(ids, []string{f.d1.ID}) {
					t.Errorf("alice's active devices %v", ids)
				}
				if err := tx.RevokeDevices(ids); err != nil {
					return err
				}
				return tx.ResetChain(f.alice.ID, 1)
			})
			alice, _ := s.FindUser(ctx, f.alice.ID)
			link, _ := s.FindRequest(ctx, f.qLink.ID)
			if active, _ := s.DeviceActive(ctx, f.d1.ID); active || alice.ChainEpoch != 1 || link.State != store.RequestExpired {
				t.Errorf("after the reset: d1 active %v, epoch %d, link request %s", active, alice.ChainEpoch, link.State)
			}
		})
	}
}

// TestPages: every list, walked page by page with its cursors, returns
// exactly the rows of the unpaged list in the same order, whatever the
// page size, also when rows share a creation time (the id breaks the tie).
func TestPages(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
			s := storetest.Open(t, b, func() time.Time { return now })
			u := store.User{ID: store.NewID(), Handle: "u", CreatedAt: now}
			p := store.Party{ID: store.NewID(), Name: "p", Fingerprint: "P", PublicKey: []byte("k"), CreatedAt: now}
			d := store.Device{ID: store.NewID(), UserID: u.ID, Fingerprint: "D", PublicKey: []byte("k"), Status: store.DeviceActive, CreatedAt: now}
			rows := []any{&u, &p, &d}
			for i := range 7 {
				// Three rows at each time, so that pages end inside a tie.
				at := now.Add(time.Duration(i/3) * time.Second)
				k := store.NewID()
				r := store.Record{ID: store.NewID(), UserID: u.ID, PartyID: p.ID, State: store.StatePending, Profile: "compat",
					CiphertextSHA256: k, BlobKey: &k, MetadataSHA256: k, CreatedAt: at, ExpiresAt: now.Add(time.Hour)}
				q := store.Request{ID: store.NewID(), Kind: store.KindApproval, RecordID: r.ID, UserID: u.ID, PartyID: p.ID,
					State: store.RequestOpen, CreatedAt: at, ExpiresAt: now.Add(time.Hour)}
				g := store.Grant{ID: store.NewID(), RecordID: r.ID, PartyID: p.ID, UserID: u.ID, RequestID: q.ID, DeviceID: d.ID,
					KeyPacket: []byte("p"), Statement: []byte("s"), Signature: []byte("s"), CreatedAt: at, ExpiresAt: now.Add(time.Hour)}
				kp := store.RecordKeyPacket{RecordID: r.ID, DeviceID: d.ID, Fingerprint: "D", Packet: []byte("p")}
				ou := store.User{ID: store.NewID(), Handle: fmt.Sprint("u", i), CreatedAt: at}
				op := store.Party{ID: store.NewID(), Name: "p", Fingerprint: fmt.Sprint("P", i), PublicKey: []byte("k"), CreatedAt: at}
				rows = append(rows, &r, &q, &g, &kp, &ou, &op)
			}
			if err := s.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
				for _, v := range rows {
					if err := tx.Insert(v); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			ids := func(n int, id func(int) string) []string {
				out := make([]string, n)
				for i := range out {
					out[i] = id(i)
				}
				return out
			}
			lists := map[string]func(store.Page) ([]string, *store.Cursor, error){
				"records": func(pg store.Page) ([]string, *store.Cursor, error) {
					rs, next, err := s.ListRecords(ctx, store.RecordFilter{UserID: u.ID, Page: pg})
					return ids(len(rs), func(i int) string { return rs[i].ID }), next, err
				},
				"grants": func(pg store.Page) ([]string, *store.Cursor, error) {
					gs, next, err := s.ListGrants(ctx, store.GrantFilter{PartyID: p.ID, Page: pg})
					return ids(len(gs), func(i int) string { return gs[i].ID }), next, err
				},
				"requests": func(pg store.Page) ([]string, *store.Cursor, error) {
					qs, next, err := s.OpenRequestsForDevice(ctx, u.ID, d.ID, now, pg)
					return ids(len(qs), func(i int) string { return qs[i].ID }), next, err
				},
				"users": func(pg store.Page) ([]string, *store.Cursor, error) {
					us, next, err := s.ListUsers(ctx, pg)
					return ids(len(us), func(i int) string { return us[i].ID }), next, err
				},
				"parties": func(pg store.Page) ([]string, *store.Cursor, error) {
					ps, next, err := s.ListParties(ctx, pg)
					return ids(len(ps), func(i int) string { return ps[i].ID }), next, err
				},
			}
			for name, list := range lists {
				all, next, err := list(store.Page{})
				if err != nil || next != nil || len(all) < 7 {
					t.Fatalf("%s: the whole list: %d rows, next %v, %v", name, len(all), next, err)
				}
				for size := 1; size <= len(all)+1; size++ {
					var got []string
					pg := store.Page{Limit: size}
					for pages := 0; ; pages++ {
						if pages > len(all) {
							t.Fatalf("%s, pages of %d: the cursors do not end", name, size)
						}
						page, next, err := list(pg)
						if err != nil {
							t.Fatalf("%s, pages of %d: %v", name, size, err)
						}
						if len(page) > size {
							t.Fatalf("%s, pages of %d: a page of %d", name, size, len(page))
						}
						got = append(got, page...)
						if next == nil {
							break
						}
						// The cursor travels as text.
						cur, err := store.ParseCursor(next.String())
						if err != nil {
							t.Fatalf("%s: the cursor %q does not parse: %v", name, next, err)
						}
						pg.After = cur
					}
					if !slices.Equal(got, all) {
						t.Errorf("%s, pages of %d: %v; want %v", name, size, got, all)
					}
				}
			}
		})
	}
}

func TestParseCursorRefuses(t *testing.T) {
	good := store.Cursor{Created: time.Unix(1, 5).UTC(), ID: store.NewID()}
	if c, err := store.ParseCursor(good.String()); err != nil || *c != good {
		t.Fatalf("round trip: %+v, %v", c, err)
	}
	for _, bad := range []string{"", "!!!", "bm9wZQ", // "nope"
		"MTIzLm5vdC1hbi1pZA",                             // "123.not-an-id"
		"eC4wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg", // "x.<id>"
	} {
		if _, err := store.ParseCursor(bad); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("ParseCursor(%q): %v, want ErrBadCursor", bad, err)
		}
	}
}

// TestOpenRequestsPlan: the device's open-request query does not
// read the device's past records: its plan reaches record_key_packets
// only through the (record, device) index, once per open request.
func TestOpenRequestsPlan(t *testing.T) {
	for _, b := range storetest.Backends() {
		if b.Name != "sqlite" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			s := storetest.Open(t, b, time.Now)
			var plan []struct {
				Detail string
			}
			err := s.DB(context.Background()).Raw(`EXPLAIN QUERY PLAN SELECT * FROM requests WHERE (user_id = ? AND state = ? AND expires_at > ?)
				AND (kind = ? OR EXISTS (SELECT 1 FROM record_key_packets k WHERE k.record_id = requests.record_id AND k.device_id = ?))
				ORDER BY created_at, id LIMIT 11`, "u", store.RequestOpen, time.Now(), store.KindDevice, "d").Scan(&plan).Error
			if err != nil {
				t.Fatal(err)
			}
			var text []string
			for _, p := range plan {
				text = append(text, p.Detail)
			}
			joined := fmt.Sprint(text)
			if !strings.Contains(joined, "idx_requests_user_state") || !strings.Contains(joined, "idx_record_key_packets_record_device") ||
				strings.Contains(joined, "SCAN k") || strings.Contains(joined, "LIST SUBQUERY") {
				t.Errorf("plan %q: want idx_requests_user_state, then a probe of idx_record_key_packets_record_device per request", text)
			}
		})
	}
}

// TestOwnerByToken: the one-query token check finds the device or party a
// token of its kind was issued to, with the token's expiry, and nothing
// for a token of the other kind, an unknown token or a token whose owner
// is gone.
func TestOwnerByToken(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b)
			ctx := context.Background()
			exp := f.now.Add(time.Hour)
			tokens := []store.Token{
				{Hash: "tdev", SubjectKind: store.ActorDevice, SubjectID: f.d1.ID, ExpiresAt: exp},
				{Hash: "tparty", SubjectKind: store.ActorParty, SubjectID: f.lab.ID, ExpiresAt: exp},
				{Hash: "tgone", SubjectKind: store.ActorDevice, SubjectID: store.NewID(), ExpiresAt: exp},
			}
			if err := f.s.DB(ctx).Create(&tokens).Error; err != nil {
				t.Fatal(err)
			}
			d, e, err := f.s.DeviceByToken(ctx, "tdev")
			if err != nil || d.ID != f.d1.ID || d.Fingerprint != "D1" || d.Status != store.DeviceActive || !e.Equal(exp) {
				t.Errorf("device by token: %+v, %v, %v", d, e, err)
			}
			p, e, err := f.s.PartyByToken(ctx, "tparty")
			if err != nil || p.ID != f.lab.ID || p.Name != "lab" || !e.Equal(exp) {
				t.Errorf("party by token: %+v, %v, %v", p, e, err)
			}
			for _, h := range []string{"tparty", "tgone", "nope"} {
				if _, _, err := f.s.DeviceByToken(ctx, h); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("device by token %s: %v, want ErrNotFound", h, err)
				}
			}
			if _, _, err := f.s.PartyByToken(ctx, "tdev"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("party by a device token: %v, want ErrNotFound", err)
			}
		})
	}
}

// keyPacketCount counts the record's key packets (through gorm).
func keyPacketCount(t *testing.T, s *store.Store, recordID string) int64 {
	t.Helper()
	var n int64
	if err := s.DB(context.Background()).Model(&store.RecordKeyPacket{}).Where("record_id = ?", recordID).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}
