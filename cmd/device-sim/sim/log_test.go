package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/server/servertest"
	"github.com/keyholder/keyholder/pkg/client"
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
}
