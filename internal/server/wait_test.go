package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// waited is the answer of a GET that may wait.
type waited struct {
	status int
	body   []byte
	took   time.Duration
}

// getLater GETs path in the background; the answer arrives on the channel.
func (e *env) getLater(path, token string) <-chan waited {
	out := make(chan waited, 1)
	start := time.Now()
	go func() {
		resp, data := e.do("GET", path, token, nil)
		out <- waited{resp.StatusCode, data, time.Since(start)}
	}()
	return out
}

func (e *env) waitedFor(ch <-chan waited, out any) waited {
	e.t.Helper()
	select {
	case w := <-ch:
		if w.status != http.StatusOK {
			e.t.Fatalf("status %d: %s", w.status, w.body)
		}
		if err := json.Unmarshal(w.body, out); err != nil {
			e.t.Fatal(err)
		}
		return w
	case <-time.After(20 * time.Second):
		e.t.Fatal("the wait did not end")
		return waited{}
	}
}

// TestWaitForDecision: a party's GET of its pending record with wait
// answers when the device decides (not before, not at the end of the
// wait); of its access request, when the device answers. A wait on what
// is already settled answers at once, a wait nobody ends answers at its
// end with the state unchanged, and another party's record is not found
// without waiting.
func TestWaitForDecision(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			dev := e.newUser("alice")
			lab, bank := e.newParty("lab"), e.newParty("bank")
			rec, _ := e.submit(lab, dev.user, []byte("waited for"))
			path := api.Path(api.PathRecord, rec.ID) + "?wait=30"

			ch := e.getLater(path, lab.token)
			waitFor(t, func() bool { return e.hub.Subscribers(decidedKey(rec.ID)) == 1 })
			select {
			case w := <-ch:
				t.Fatalf("the wait answered before the decision: %d %s", w.status, w.body)
			case <-time.After(200 * time.Millisecond):
			}
			e.approve(dev, rec.ID)
			var r api.Record
			if w := e.waitedFor(ch, &r); r.State != api.RecordApproved || w.took > 10*time.Second {
				t.Fatalf("after the approval: state %s, in %s", r.State, w.took)
			}
			if e.hub.Subscribers(decidedKey(rec.ID)) != 0 {
				t.Fatal("the waiter is still subscribed")
			}
			// Settled already: at once.
			if w := e.waitedFor(e.getLater(path, lab.token), &r); r.State != api.RecordApproved || w.took > 2*time.Second {
				t.Fatalf("a decided record: state %s, in %s", r.State, w.took)
			}
			// Another party's record: 404, without waiting.
			other, _ := e.submit(lab, dev.user, []byte("not the bank's"))
			resp, data := e.do("GET", api.Path(api.PathRecord, other.ID)+"?wait=30", bank.token, nil)
			e.wantProblem(resp, data, http.StatusNotFound)
			// Nobody decides: the wait ends with the record still pending.
			w := e.waitedFor(e.getLater(api.Path(api.PathRecord, other.ID)+"?wait=1", lab.token), &r)
			if r.State != api.RecordPending || w.took < time.Second {
				t.Fatalf("an unanswered wait: state %s after %s", r.State, w.took)
			}

			// An access request, answered by a grant.
			var ar api.AccessResponse
			e.call("POST", api.Path(api.PathRecordAccess, rec.ID), bank.token, api.AccessRequest{Purpose: "loan"}, 202, &ar)
			ch = e.getLater(api.Path(api.PathPartyRequest, ar.RequestID)+"?wait=30", bank.token)
			waitFor(t, func() bool { return e.hub.Subscribers(answeredKey(ar.RequestID)) == 1 })
			det := e.findRequest(dev, store.KindAccess, rec.ID)
			e.call("POST", api.Path(api.PathDeviceGrant, det.ID), dev.token, grantBody(t, det, dev, bank.key.Public(), e.clock.now()), 200, nil)
			var st api.AccessStatus
			if w := e.waitedFor(ch, &st); st.State != api.RequestAnswered || st.Answer != api.AnswerGranted || st.GrantID == "" || w.took > 10*time.Second {
				t.Fatalf("after the grant: %+v in %s", st, w.took)
			}
		})
	}
}

// TestWaitRefusesBadValues: wait is a whole number of seconds from 1 to
// api.MaxWaitSeconds.
func TestWaitRefusesBadValues(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("x"))
	for _, v := range []string{"0", "-1", "61", "1.5", "1s", "x", "99999999999999999999"} {
		resp, data := e.do("GET", api.Path(api.PathRecord, rec.ID)+"?wait="+v, lab.token, nil)
		e.wantProblem(resp, data, http.StatusBadRequest)
	}
}

// TestWaitsPerPartyBounded: past Config.MaxWaitsPerParty held waits, a
// party's GET answers at once, as without wait; a slot frees when a wait
// ends.
func TestWaitsPerPartyBounded(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.MaxWaitsPerParty = 1 })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	one, _ := e.submit(lab, dev.user, []byte("one"))
	two, _ := e.submit(lab, dev.user, []byte("two"))
	held := e.getLater(api.Path(api.PathRecord, one.ID)+"?wait=30", lab.token)
	waitFor(t, func() bool { return e.hub.Subscribers(decidedKey(one.ID)) == 1 })
	var r api.Record
	if w := e.waitedFor(e.getLater(api.Path(api.PathRecord, two.ID)+"?wait=30", lab.token), &r); r.State != api.RecordPending || w.took > 5*time.Second {
		t.Fatalf("a wait past the bound: state %s after %s, want pending at once", r.State, w.took)
	}
	e.approve(dev, one.ID)
	if e.waitedFor(held, &r); r.State != api.RecordApproved {
		t.Fatalf("the held wait: %s", r.State)
	}
	waitFor(t, func() bool { return e.srv.waitSlots.inUse(lab.id) == 0 })
	ch := e.getLater(api.Path(api.PathRecord, two.ID)+"?wait=30", lab.token)
	waitFor(t, func() bool { return e.hub.Subscribers(decidedKey(two.ID)) == 1 })
	e.approve(dev, two.ID)
	if e.waitedFor(ch, &r); r.State != api.RecordApproved {
		t.Fatalf("after the slot freed: %s", r.State)
	}
}

// TestWakesInABatch: decisions made together wake every waiter (the push
// workers send the wake-ups the queue holds in one batch).
func TestWakesInABatch(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.PushWorkers = 1 })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	var waits []<-chan waited
	var ids []string
	for i := range 6 {
		rec, _ := e.submit(lab, dev.user, []byte{'r', byte(i)})
		ids = append(ids, rec.ID)
		waits = append(waits, e.getLater(api.Path(api.PathRecord, rec.ID)+"?wait=30", lab.token))
	}
	for _, id := range ids {
		waitFor(t, func() bool { return e.hub.Subscribers(decidedKey(id)) == 1 })
	}
	for _, id := range ids {
		e.approve(dev, id)
	}
	for i, ch := range waits {
		var r api.Record
		if w := e.waitedFor(ch, &r); r.State != api.RecordApproved || w.took > 10*time.Second {
			t.Fatalf("waiter %d: %s after %s", i, r.State, w.took)
		}
	}
}
