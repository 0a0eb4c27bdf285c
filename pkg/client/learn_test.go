package client

import (
	"bytes"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// listCounter counts the device record lists a client fetches, whole or
// filtered by a session key id.
type listCounter struct{ whole, bySessionKey atomic.Int64 }

func (l *listCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == api.PathDeviceRecords {
		if r.URL.Query().Get(api.QuerySessionKeyID) != "" {
			l.bySessionKey.Add(1)
		} else {
			l.whole.Add(1)
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestCheckAsksForTheSessionKey: before an approval, a device asks the
// server for the records approved with the request's session key (one
// filtered read) instead of reading the user's record list, whose cost
// grows with the history; and a transplanted key packet is refused by a
// restarted client, by a second client of the same device whose index
// never saw the approval, and by a device whose user has two.
func TestCheckAsksForTheSessionKey(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, first, lab := e.setup(ctx, "carol")
	counted := func(id *Identity) (*Client, *listCounter) {
		lc := &listCounter{}
		c, err := New(e.ts.URL, WithIdentity(id), WithHTTPClient(&http.Client{Transport: lc}))
		if err != nil {
			t.Fatal(err)
		}
		return c, lc
	}
	dev, lists := counted(first.Identity())
	other, _ := counted(first.Identity()) // the same device, another client (its own index)
	sealApproved(t, ctx, lab, other, user, "approved through the other client", envelope.Compat)
	x := sealApproved(t, ctx, lab, dev, user, "first record", envelope.Compat)
	sealApproved(t, ctx, lab, dev, user, "second record", envelope.Compat)
	// Asked at the check and again at the approval.
	if w, k := lists.whole.Load(), lists.bySessionKey.Load(); w != 0 || k != 4 {
		t.Fatalf("two approvals read the whole list %d times and asked by session key %d times, want 0 and 4", w, k)
	}

	operator := e.client(identity(t, "operator"))
	if _, err := e.admin.CreateParty(ctx, "Operator", operator.Identity().Key.Public().Armor()); err != nil && !IsConflict(err) {
		t.Fatal(err)
	}
	transplant := func(record string) string {
		t.Helper()
		up, err := operator.Upload(ctx, user, bytes.NewReader(forgeMessage(t, e.keyPackets(record), envelope.Compat)), UploadOptions{Purpose: "Lunch menu"})
		if err != nil {
			t.Fatal(err)
		}
		return up.Record.ID
	}
	refused := func(c *Client, who string) {
		t.Helper()
		d := openRequest(t, ctx, c, KindApproval)
		if _, err := c.Check(ctx, d); !errors.Is(err, ErrSessionKeyReused) || ReasonOf(err) != "session-key-reused" {
			t.Fatalf("%s accepted a transplanted key packet: %v", who, err)
		}
	}
	forged := transplant(x)
	refused(other, "a second client of the approving device")
	restarted, _ := counted(first.Identity())
	refused(restarted, "a restarted device")
	if _, err := restarted.RejectRequest(ctx, openRequest(t, ctx, restarted, KindApproval), "session-key-reused"); err != nil {
		t.Fatal(err)
	}
	if rec, err := operator.WaitDecided(ctx, forged); err != nil || rec.State != api.RecordRejected {
		t.Fatalf("forged record %v %v", rec, err)
	}

	// Two devices: what the other one approved is refused too.
	second := e.addDevice(ctx, dev, user, "carol-device-2")
	y := sealApproved(t, ctx, lab, second, user, "approved by the other device", envelope.Compat)
	transplant(y)
	refused(dev, "the device that did not approve Y")
}
