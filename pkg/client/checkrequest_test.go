package client

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// An access request must carry the record's approval, signed by a device
// on the user's key chain: the server's approval_device field cannot
// switch the check off or point it at another key.
func TestCheckRequestAccessNeedsApproval(t *testing.T) {
	e := newTestEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user, dev, party := e.setup(ctx, "erin")
	up, err := party.SealAndUpload(ctx, user, bytes.NewReader([]byte("hello")), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	approveAll(t, ctx, dev)
	if _, err := party.WaitDecided(ctx, up.Record.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := party.RequestAccess(ctx, up.Record.ID, "check", 0); err != nil {
		t.Fatal(err)
	}
	reqs, err := dev.DeviceRequests(ctx)
	if err != nil || len(reqs) != 1 {
		t.Fatalf("requests %v %v", reqs, err)
	}
	fresh := func() *api.RequestDetail {
		d, err := dev.DeviceRequest(ctx, reqs[0].ID)
		if err != nil || d.Kind != KindAccess {
			t.Fatalf("request %+v %v", d, err)
		}
		return d
	}
	ch, err := dev.OwnChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CheckRequest(fresh(), dev.Identity(), ch); err != nil {
		t.Fatalf("the genuine request: %v", err)
	}
	other := identity(t, "erin-other-device").Fingerprint()
	for name, tamper := range map[string]func(d *api.RequestDetail){
		"no approval, no approving device": func(d *api.RequestDetail) {
			d.ApprovalDevice, d.ApprovalStatement, d.ApprovalSignature = "", "", ""
		},
		"no approval, another device named": func(d *api.RequestDetail) {
			d.ApprovalDevice, d.ApprovalStatement, d.ApprovalSignature = other, "", ""
		},
		"bad signature, no approving device": func(d *api.RequestDetail) {
			d.ApprovalDevice, d.ApprovalSignature = "", d.SubmissionSignature
		},
		"bad signature, another device named": func(d *api.RequestDetail) {
			d.ApprovalDevice, d.ApprovalSignature = other, d.SubmissionSignature
		},
	} {
		d := fresh()
		tamper(d)
		if _, err := CheckRequest(d, dev.Identity(), ch); !errors.Is(err, ErrVerification) {
			t.Errorf("%s: accepted (%v)", name, err)
		}
	}
}
