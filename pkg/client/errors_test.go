package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// otherToolPublicKey is a v4 key made without advertising SEIPDv2, as
// GnuPG or RNP make them.
func otherToolPublicKey(t *testing.T) *envelope.Key {
	t.Helper()
	e, err := openpgp.NewEntity("gnupg-like", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	k, err := envelope.ParseKey([]byte(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestUnreachableServer: a refused connection says which server and asks
// whether keyholderd runs there, and counts as transient.
func TestUnreachableServer(t *testing.T) {
	url := closedURL(t)
	c, err := New(url, WithIdentity(identity(t, "nobody")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PartyRecords(context.Background())
	if err == nil {
		t.Fatal("call to a closed port succeeded")
	}
	if want := "is keyholderd running at " + url + "?"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not ask %q", err, want)
	}
	if !IsTransient(err) {
		t.Errorf("connection refused is not transient: %v", err)
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&Error{Status: 503}, true},
		{&Error{Status: 500}, true},
		{fmt.Errorf("approving: %w", &Error{Status: 502}), true},
		{&Error{Status: 429}, true},
		{&Error{Status: 404}, false},
		{&Error{Status: 409}, false},
		{&Error{Status: 422}, false},
		{errors.New("unknown decision"), false},
		{fmt.Errorf("rewrap: %w", envelope.ErrProfileMismatch), false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("reading plaintext: %w", &os.PathError{Op: "read", Path: "f", Err: syscall.EIO}), false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestGrantRequestChecksTheRequesterKey: GrantRequest asks
// Key.CanReceive before it rewraps, so a modern record is not granted to a
// key that does not advertise SEIPDv2 (the rewrap itself would succeed and
// make a grant its holder cannot open). The error is local: nothing is
// sent (the server here is not even reachable), and it is not transient.
func TestGrantRequestChecksTheRequesterKey(t *testing.T) {
	dev := identity(t, "grant-check-device")
	c, err := New(closedURL(t), WithIdentity(dev))
	if err != nil {
		t.Fatal(err)
	}
	var msg strings.Builder
	sw, err := envelope.Seal(&msg, envelope.Modern, dev.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	sw.Close()
	m, err := envelope.Split(strings.NewReader(msg.String()))
	if err != nil {
		t.Fatal(err)
	}
	requester := otherToolPublicKey(t)
	exp := statementTime().Add(time.Hour)
	skid, err := envelope.SessionKeyID(m.KeyPackets[0], envelope.Modern, dev.Key)
	if err != nil {
		t.Fatal(err)
	}
	cr := &CheckedRequest{Detail: &api.RequestDetail{ID: "0123456789abcdef0123456789abcdef", Kind: KindAccess,
		RecordID: "fedcba9876543210fedcba9876543210", RequesterFingerprint: requester.Fingerprint(), Purpose: "p", GrantExpires: &exp},
		Profile: envelope.Modern, KeyPacket: m.KeyPackets[0], RequesterKey: requester,
		SessionKeyID: skid, Approval: &statement.Approval{SessionKeyID: skid}}
	_, err = c.GrantRequest(context.Background(), cr, time.Time{})
	if !errors.Is(err, envelope.ErrProfileMismatch) || !errors.Is(err, ErrVerification) || IsTransient(err) {
		t.Fatalf("GrantRequest = %v, want a failed check (ErrVerification, ErrProfileMismatch)", err)
	}
	// The session key was not claimed for a grant that was not made.
	if rec, err := c.sessionKeys.Record(skid); err != nil || rec != "" {
		t.Fatalf("session key claimed for %q (%v)", rec, err)
	}
}
