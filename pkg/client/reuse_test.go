package client

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestCheckRefusesReuseAlreadyClaimed: a device that checked the forged
// record B first (claiming B's session key for B) and checks it again after
// the original A, with the same session key, was approved elsewhere, must
// refuse B. learnSessionKey finds A's approval, but rememberApproval's
// ErrSessionKeyReused is swallowed and claimSessionKey sees K→B: B passes.
func TestCheckRefusesReuseAlreadyClaimed(t *testing.T) {
	e := newTestEnv(t)
	ctx := ctxT(t)
	user, first, lab := e.setup(ctx, "dave")
	dev := e.client(first.Identity())
	other := e.client(first.Identity()) // another client of the device (or another device)
	up, err := lab.SealAndUpload(ctx, user, strings.NewReader("original"), UploadOptions{Profile: envelope.Compat})
	if err != nil {
		t.Fatal(err)
	}
	operator := e.client(identity(t, "operator"))
	if _, err := e.admin.CreateParty(ctx, "Operator", operator.Identity().Key.Public().Armor()); err != nil && !IsConflict(err) {
		t.Fatal(err)
	}
	fup, err := operator.Upload(ctx, user, bytes.NewReader(forgeMessage(t, e.keyPackets(up.Record.ID), envelope.Compat)), UploadOptions{Purpose: "Lunch menu"})
	if err != nil {
		t.Fatal(err)
	}
	forRecord := func(c *Client, rec string) *api.RequestDetail {
		t.Helper()
		reqs, err := c.DeviceRequests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reqs {
			d, err := c.DeviceRequest(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind == KindApproval && d.RecordID == rec {
				return d
			}
		}
		t.Fatalf("no request for %s", rec)
		return nil
	}
	// dev is shown the forged record first (the server picks the order).
	if _, err := dev.Check(ctx, forRecord(dev, fup.Record.ID)); err != nil {
		t.Fatalf("first check of B: %v", err)
	}
	// The original is approved through the other client.
	cr, err := other.Check(ctx, forRecord(other, up.Record.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.ApproveRequest(ctx, cr); err != nil {
		t.Fatal(err)
	}
	// dev checks B again (a re-shown request): A is now approved with B's key.
	crB, err := dev.Check(ctx, forRecord(dev, fup.Record.ID))
	if !errors.Is(err, ErrSessionKeyReused) {
		_, aerr := dev.ApproveRequest(ctx, crB)
		t.Fatalf("B passed its check although A was approved with its session key: %v (approve: %v)", err, aerr)
	}
}
