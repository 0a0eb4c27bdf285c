package server

import (
	"fmt"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestListsQueryOncePerList: the record and grant lists take as many
// queries for ten records as for two (the deciding devices' and the
// grantees' fingerprints are looked up for the whole list at once, not
// per row), and still name the device that decided each record.
func TestListsQueryOncePerList(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			dev := e.newUser("alice")
			lab := e.newParty("lab")
			var counting atomic.Bool
			var queries atomic.Int64
			count := func(*gorm.DB) {
				if counting.Load() {
					queries.Add(1)
				}
			}
			cb := e.st.DB(t.Context()).Callback()
			if err := cb.Query().After("gorm:query").Register("test:count", count); err != nil {
				t.Fatal(err)
			}
			if err := cb.Row().After("gorm:row").Register("test:count", count); err != nil {
				t.Fatal(err)
			}
			lists := []struct {
				path, token string
			}{
				{api.PathDeviceRecords, dev.token},
				{api.PathPartyRecords, lab.token},
				{api.PathDeviceGrants, dev.token},
				{api.PathPartyGrants, lab.token},
			}
			measure := func() []int64 {
				var out []int64
				// The pushes of the requests before run on goroutines of
				// their own: wait for them, so that no query of theirs is
				// counted with a list.
				e.srv.waitPushes()
				for _, l := range lists {
					queries.Store(0)
					counting.Store(true)
					e.call("GET", l.path, l.token, nil, 200, nil)
					counting.Store(false)
					out = append(out, queries.Load())
				}
				return out
			}
			add := func(n int) {
				for range n {
					rec, _ := e.submit(lab, dev.user, randBytes(100))
					e.approve(dev, rec.ID)
					e.grantAccess(dev, lab, rec.ID, 3600)
				}
			}
			add(2)
			few := measure()
			add(8)
			many := measure()
			if fmt.Sprint(few) != fmt.Sprint(many) {
				t.Fatalf("queries per list (device records, party records, device grants, party grants): %v with 2 records, %v with 10", few, many)
			}
			var rl api.RecordList
			e.call("GET", api.PathDeviceRecords, dev.token, nil, 200, &rl)
			if len(rl.Records) != 10 {
				t.Fatalf("%d records, want 10", len(rl.Records))
			}
			for _, r := range rl.Records {
				if r.DeviceFingerprint != dev.key.Fingerprint() {
					t.Fatalf("record %s decided by %q, want %s", r.ID, r.DeviceFingerprint, dev.key.Fingerprint())
				}
			}
			var gl api.GrantList
			e.call("GET", api.PathDeviceGrants, dev.token, nil, 200, &gl)
			if len(gl.Grants) != 10 || gl.Grants[0].GranteeFP != lab.key.Fingerprint() {
				t.Fatalf("device grants: %d, first to %q", len(gl.Grants), gl.Grants[0].GranteeFP)
			}
		})
	}
}
