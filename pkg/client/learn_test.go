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

// listCounter counts the device record lists a client fetches.
type listCounter struct{ n atomic.Int64 }

func (l *listCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == api.PathDeviceRecords {
		l.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestCheckLearnsOnlyWhatOthersCouldApprove: a device reads the user's
// record list (LearnSessionKeys, whose cost grows with the history) once
// per client and then only while another device could have approved
// something; a transplanted key packet is refused all the same, by a
// restarted client and by a device whose user has two.
func TestCheckLearnsOnlyWhatOthersCouldApprove(t *testing.T) {
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
	x := sealApproved(t, ctx, lab, dev, user, "first record", envelope.Compat)
	sealApproved(t, ctx, lab, dev, user, "second record", envelope.Compat)
	sealApproved(t, ctx, lab, dev, user, "third record", envelope.Compat)
	if n := lists.n.Load(); n != 1 {
		t.Fatalf("a sole device read the record list %d times over three approvals, want once", n)
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
		if _, err := c.Check(ctx, d); !errors.Is(err, ErrSessionKeyReused) {
			t.Fatalf("%s accepted a transplanted key packet: %v", who, err)
		}
	}
	// A restarted device (its index in memory, so empty) learns X from the
	// list at its first check.
	forged := transplant(x)
	restarted, rlists := counted(first.Identity())
	refused(restarted, "a restarted device")
	if n := rlists.n.Load(); n != 1 {
		t.Fatalf("the restarted device read the list %d times, want 1", n)
	}
	if _, err := restarted.RejectRequest(ctx, openRequest(t, ctx, restarted, KindApproval), "session-key-reused"); err != nil {
		t.Fatal(err)
	}
	if rec, err := operator.WaitDecided(ctx, forged); err != nil || rec.State != api.RecordRejected {
		t.Fatalf("forged record %v %v", rec, err)
	}

	// Two devices: what the other one approved is learnt before each
	// approval check.
	other := e.addDevice(ctx, dev, user, "carol-device-2")
	y := sealApproved(t, ctx, lab, other, user, "approved by the other device", envelope.Compat)
	before := lists.n.Load()
	transplant(y)
	refused(dev, "the device that did not approve Y")
	if lists.n.Load() == before {
		t.Fatal("with two devices on the chain, the check did not read the record list")
	}
}
