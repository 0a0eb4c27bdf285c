package server

import (
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestRecordsBySessionKeyID: a device's record list filtered by a session
// key id holds its user's records approved with that session key, and no
// pending record and no other user's; a malformed id is a 400.
func TestRecordsBySessionKeyID(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			alice, bob := e.newUser("alice"), e.newUser("bob")
			lab := e.newParty("lab")
			approved, _ := e.submit(lab, alice.user, []byte("approved"))
			det := e.approve(alice, approved.ID)
			skid := hex.EncodeToString(approvalFor(det, alice, e.clock.now()).SessionKeyID[:])
			pending, _ := e.submit(lab, alice.user, []byte("pending"))
			pdet := e.findRequest(alice, store.KindApproval, pending.ID)
			pskid := hex.EncodeToString(approvalFor(pdet, alice, e.clock.now()).SessionKeyID[:])

			list := func(d *device, id string) []string {
				t.Helper()
				var rl api.RecordList
				e.call("GET", api.PathDeviceRecords+"?"+api.QuerySessionKeyID+"="+id, d.token, nil, 200, &rl)
				var ids []string
				for _, r := range rl.Records {
					ids = append(ids, r.ID)
				}
				return ids
			}
			if got := list(alice, skid); len(got) != 1 || got[0] != approved.ID {
				t.Fatalf("records approved with %s: %v, want [%s]", skid, got, approved.ID)
			}
			if got := list(alice, pskid); len(got) != 0 {
				t.Fatalf("a pending record's session key: %v, want none", got)
			}
			if got := list(bob, skid); len(got) != 0 {
				t.Fatalf("another user's device: %v, want none", got)
			}
			for _, bad := range []string{"xyz", strings.ToUpper(skid), skid[:62], skid + "00"} {
				resp, data := e.do("GET", api.PathDeviceRecords+"?"+api.QuerySessionKeyID+"="+bad, alice.token, nil)
				e.wantProblem(resp, data, http.StatusBadRequest)
			}
		})
	}
}
