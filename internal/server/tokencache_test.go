package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestTwoReplicasTokenCache: each replica caches token owners, and every
// way a device can lose its access reaches both at once: a revocation
// through either replica's API, and an operator's UPDATE or DELETE in the
// database. The clock is frozen, so no entry ever expires: what refuses a
// cached token here is the flush or the notification, nothing else.
func TestTwoReplicasTokenCache(t *testing.T) {
	a, b := replicas(t, nil)
	// On once each LISTEN connection heard its store's probe.
	waitFor(t, func() bool { return a.st.TokenCache().On() && b.st.TokenCache().On() })
	alice := a.newUser("alice")
	reqs := func(e *env, d *device) (int, int64) {
		n := e.st.Statements()
		resp, _ := e.do("GET", api.PathDeviceRequests, d.token, nil)
		return resp.StatusCode, e.st.Statements() - n
	}
	// refusedWithin: d's token is refused on e within a notification's
	// delay (well under the 5 s TTL, which the frozen clock never reaches).
	refusedWithin := func(e *env, d *device, what string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			code, _ := reqs(e, d)
			if code == http.StatusUnauthorized {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the token still answers %d after 3 s", what, code)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	warm := func(d *device) {
		t.Helper()
		for _, e := range []*env{a, b} {
			code, miss := reqs(e, d)
			code2, hit := reqs(e, d)
			if code != 200 || code2 != 200 || hit != miss-1 {
				t.Fatalf("GET requests: %d then %d, %d then %d statements; want the second to skip the token read", code, code2, miss, hit)
			}
		}
	}

	t.Run("revoked through the API", func(t *testing.T) {
		phone := a.addDevice(alice)
		warm(phone)
		_, m := a.do("GET", api.PathMetrics, "", nil)
		if !strings.Contains(string(m), "keyholder_token_cache_on 1") || strings.Contains(string(m), "keyholder_token_cache_hits_total 0\n") {
			t.Errorf("the metrics do not show the cache on and used:\n%s", grepLines(string(m), "keyholder_token_cache"))
		}
		a.extend(alice, statement.ActionRevokeDevice, phone.key)
		if code, _ := reqs(a, phone); code != http.StatusUnauthorized {
			t.Fatalf("the revoking replica answered %d to the revoked device's next request", code)
		}
		refusedWithin(b, phone, "the other replica")
	})
	// An operator's change in the database, on neither replica's path.
	for _, c := range []struct{ name, sql string }{
		{"status changed in the database", "UPDATE devices SET status = '" + store.DeviceRevoked + "' WHERE id = ?"},
		{"token deleted in the database", "DELETE FROM tokens WHERE subject_id = ?"},
	} {
		t.Run(c.name, func(t *testing.T) {
			phone := a.addDevice(alice)
			warm(phone)
			if err := a.st.DB(context.Background()).Exec(c.sql, phone.id).Error; err != nil {
				t.Fatal(err)
			}
			refusedWithin(a, phone, "replica A")
			refusedWithin(b, phone, "replica B")
		})
	}
	t.Run("LISTEN connection lost", func(t *testing.T) {
		phone := a.addDevice(alice)
		warm(phone)
		// Cut both replicas' LISTEN connections: while they are down the
		// caches must be off, and empty when they are back.
		var n int
		if err := a.st.DB(context.Background()).Raw(
			"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE ?", "%"+a.channel+"%keyholder_auth%").Scan(&n).Error; err != nil || n != 2 {
			t.Fatalf("terminated %d LISTEN connections (%v), want 2", n, err)
		}
		waitFor(t, func() bool { return !a.st.TokenCache().On() && !b.st.TokenCache().On() })
		code, off := reqs(a, phone)
		code2, again := reqs(a, phone)
		// (Should the cache come back between the two, it comes back
		// empty: the second is a miss either way.)
		if code != 200 || code2 != 200 || again != off {
			t.Fatalf("while deaf: %d, %d; %d then %d statements: the token was served from the cache", code, code2, off, again)
		}
		waitFor(t, func() bool { return a.st.TokenCache().On() && b.st.TokenCache().On() })
		warm(phone) // emptied when turned on again: a miss, then a hit
	})
}

// TestAnswerOfARevokedDevice: an answer is written only if its device is
// still active when the write runs, whatever its token check said. Here
// the token check passes from the token cache (turned on by hand, with
// nothing to empty it), the device having been revoked in the database
// after its last request: its approval and its grant are refused with
// 401, and nothing changes.
func TestAnswerOfARevokedDevice(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			e.st.TokenCache().Changed()
			alice := e.newUser("alice")
			phone := e.addDevice(alice)
			lab, bank := e.newParty("lab"), e.newParty("bank")
			approved, _ := e.submit(lab, alice.user, []byte("approved before"))
			e.approve(alice, approved.ID)
			pending, _ := e.submit(lab, alice.user, []byte("pending"))
			e.call("POST", api.Path(api.PathRecordAccess, approved.ID), bank.token, api.AccessRequest{Purpose: "check", ExpiresIn: 3600}, 202, nil)
			adet := e.findRequest(phone, store.KindApproval, pending.ID) // also caches phone's token
			gdet := e.findRequest(phone, store.KindAccess, approved.ID)

			if err := e.st.DB(context.Background()).Exec("UPDATE devices SET status = ? WHERE id = ?", store.DeviceRevoked, phone.id).Error; err != nil {
				t.Fatal(err)
			}
			if code, _ := e.do("GET", api.PathDeviceRequests, phone.token, nil); code.StatusCode != 200 {
				t.Fatalf("the cached token answered %d: the test needs it to pass the token check", code.StatusCode)
			}
			before := e.snap()
			resp, data := e.do("POST", api.Path(api.PathDeviceApprove, adet.ID), phone.token, signStmt(t, approvalFor(adet, phone, e.clock.now()), phone.key))
			e.wantProblem(resp, data, 401)
			resp, data = e.do("POST", api.Path(api.PathDeviceGrant, gdet.ID), phone.token, grantBody(t, gdet, phone, bank.key.Public(), e.clock.now()))
			e.wantProblem(resp, data, 401)
			e.unchanged(before)
		})
	}
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
