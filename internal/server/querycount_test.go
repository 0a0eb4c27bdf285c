package server

import (
	"encoding/json"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestQueriesPerRecord: a record's life (upload, approval, access request,
// grant) takes a bounded number of SQL statements per request, counted
// through gorm's callbacks (BEGIN and COMMIT aside), so that a change that
// adds a round trip to a hot request shows here (bench/grants -per-record
// measures its CPU). On PostgreSQL a transaction's queued inserts are one
// statement.
func TestQueriesPerRecord(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testQueriesPerRecord(t, b) })
	}
}

func testQueriesPerRecord(t *testing.T, b storetest.Backend) {
	e := newEnv(t, b, nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	var counting atomic.Bool
	var n atomic.Int64
	count := func(db *gorm.DB) {
		// A dry run (a queued insert's SQL being built) runs nothing.
		if counting.Load() && !db.DryRun {
			n.Add(1)
			if testing.Verbose() {
				t.Log(db.Statement.SQL.String())
			}
		}
	}
	cb := e.st.DB(t.Context()).Callback()
	for _, err := range []error{
		cb.Query().After("gorm:query").Register("test:count", count),
		cb.Row().After("gorm:row").Register("test:count", count),
		cb.Create().After("gorm:create").Register("test:count", count),
		cb.Update().After("gorm:update").Register("test:count", count),
		cb.Delete().After("gorm:delete").Register("test:count", count),
		cb.Raw().After("gorm:raw").Register("test:count", count),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The push to the devices after an upload or an access request runs
	// on its own goroutine: it is waited for, and counted with its
	// request, so that no statement falls outside or into the wrong count.
	measure := func(f func()) int64 {
		e.srv.waitPushes()
		n.Store(0)
		counting.Store(true)
		f()
		e.srv.waitPushes()
		counting.Store(false)
		return n.Load()
	}
	// Tokens are fetched before counting (a login is not per record).
	u := e.prepare(lab, dev.user, []byte("record"), "compat")
	var rec api.Record
	upload := measure(func() {
		resp, data := e.send(lab, dev.user, u)
		if resp.StatusCode != 201 {
			t.Fatalf("upload: %d %s", resp.StatusCode, data)
		}
		if err := json.Unmarshal(data, &rec); err != nil {
			t.Fatal(err)
		}
	})
	det := e.findRequest(dev, store.KindApproval, rec.ID)
	body := signStmt(t, approvalFor(det, dev, e.clock.now()), dev.key)
	approve := measure(func() { e.call("POST", api.Path(api.PathDeviceApprove, det.ID), dev.token, body, 200, nil) })
	var ar api.AccessResponse
	access := measure(func() {
		e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "check", ExpiresIn: 3600}, 202, &ar)
	})
	gdet := e.findRequest(dev, store.KindAccess, rec.ID)
	gb := grantBody(t, gdet, dev, bank.key.Public(), e.clock.now())
	grant := measure(func() { e.call("POST", api.Path(api.PathDeviceGrant, gdet.ID), dev.token, gb, 200, nil) })
	t.Logf("statements: upload %d, approval %d, access request %d, grant %d", upload, approve, access, grant)
	// What each request runs today, the pushes included (after an access
	// request; an upload gives its push the devices it read). On SQLite:
	// upload 8 (one of them its ciphertext, kept in the database),
	// approval 7, access request 5, grant 7 (before issue 11's changes:
	// 10, 11, 6, 12). On PostgreSQL a change's writes, guarded updates
	// included, are one statement: 4 each (the token, the request with its
	// record and parties, the key packets, the writes; an upload reads the
	// user and its devices instead), and an upload or access request, made
	// only of inserts, needs no BEGIN and COMMIT around it either.
	most := map[string][4]int64{"sqlite": {8, 7, 5, 7}, "postgres": {4, 4, 4, 4}}[b.Name]
	for i, c := range []struct {
		name string
		got  int64
	}{{"upload", upload}, {"approval", approve}, {"access request", access}, {"grant", grant}} {
		if c.got > most[i] {
			t.Errorf("%s: %d SQL statements, at most %d before", c.name, c.got, most[i])
		}
	}
}
