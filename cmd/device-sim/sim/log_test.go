package sim

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/server/servertest"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// device-sim with a log key: enroll checks its chain in the log, and run
// checks every decision in its user's name on connect, keeping how far it
// checked in its home.
func TestDeviceSimChecksTheLog(t *testing.T) {
	srv := servertest.Start(t, simAdminToken, nil)
	ctx := context.Background()
	admin, err := client.New(srv.URL, client.WithAdminToken(simAdminToken))
	if err != nil {
		t.Fatal(err)
	}
	u, err := admin.CreateUser(ctx, "lena")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("device secret\n"), 0o600)
	sim := func(args ...string) error {
		cmd := rootCmd()
		cmd.SetArgs(append(args, "--home", home, "--passphrase-file", pass))
		return cmd.ExecuteContext(ctx)
	}
	if err := sim("log", "--key", srv.LogVKey); err != nil {
		t.Fatal(err)
	}
	if err := sim("enroll", "--server", srv.URL, "--code", u.Code); err != nil {
		t.Fatal(err)
	}
	k := genKey(t, "party")
	party, err := client.IdentityFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateParty(ctx, "lab", k.Public().Armor()); err != nil {
		t.Fatal(err)
	}
	pc, err := client.New(srv.URL, client.WithIdentity(party))
	if err != nil {
		t.Fatal(err)
	}
	up, err := pc.SealAndUpload(ctx, u.ID, strings.NewReader("x"), client.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim("run", "--once", "--auto-approve"); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WaitDecided(ctx, up.Record.ID); err != nil {
		t.Fatal(err)
	}
	hs := client.FileHistories{Dir: filepath.Join(home, clihome.LogHistoriesDir)}
	waitUntil(t, "the device checked its approval in the log", func() bool {
		if err := sim("run", "--once", "--auto-approve"); err != nil {
			t.Fatal(err)
		}
		st, err := hs.History(u.ID, transparency.Decisions)
		return err == nil && st.Count == 1
	})
	if _, err := os.Stat(filepath.Join(home, clihome.LogCheckpointFile)); err != nil {
		t.Fatal(err)
	}

	// A grant in the user's name that none of the user's devices signed
	// (the operator writes it into the log): the next run raises the
	// alarm and stops.
	op := genKey(t, "operator")
	g := &statement.Grant{Record: up.Record.ID, Grantee: party.Fingerprint(), KeyPacketSHA256: sha256.Sum256([]byte("kp")),
		PurposeSHA256: statement.PurposeDigest("forged"), Expires: time.Now().Add(time.Hour).UTC().Truncate(time.Second),
		Request: "forged-request", Time: time.Now().UTC().Truncate(time.Second)}
	text, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := statement.Sign(text, op)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := transparency.SignedLeaf(text, sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.DB(ctx).Create(&store.LogEntry{Kind: store.LogGrant, Leaf: leaf, Time: time.Now()}).Error; err != nil {
		t.Fatal(err)
	}
	var alarm error
	waitUntil(t, "the device raised the alarm", func() bool {
		alarm = sim("run", "--once", "--auto-approve")
		return alarm != nil
	})
	if !errors.Is(alarm, client.ErrLog) || !strings.Contains(alarm.Error(), "ALARM") || !strings.Contains(alarm.Error(), "grant not signed by any device") {
		t.Fatalf("a forged grant: %v", alarm)
	}
}
