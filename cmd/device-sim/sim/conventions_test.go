package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/clihome/clitest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
)

// run runs device-sim as its main function does.
func run(args ...string) clitest.Result {
	return clitest.Run("device-sim", rootCmd(), "", args...)
}

func passFile(t *testing.T, pass string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(f, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestVersionAndHelp(t *testing.T) {
	r := run("--version")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "device-sim version ") {
		t.Fatalf("--version: %d %q", r.Code, r.Stdout)
	}
	r = run("--help")
	for _, want := range []string{"KEYHOLDER_DEVICE_PASSPHRASE_FILE", "at least 8 characters", "Exit codes:", "3  refused", "4  timed out", "5  could not reach the server"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("--help does not say %q:\n%s", want, r.Stdout)
		}
	}
	if r := run("enroll", "--code", "x"); r.Code != clihome.ExitUsage || !strings.Contains(r.Stderr, "--server and --code are required") {
		t.Errorf("enroll without --server: %d\n%s", r.Code, r.Stderr)
	}
	if r := run("requests", "extra"); r.Code != clihome.ExitUsage {
		t.Errorf("requests with an argument: %d\n%s", r.Code, r.Stderr)
	}
}

// TestNewKeyPassphraseLength: enroll and link refuse a passphrase shorter
// than 8 characters before they make a key or call the server; the
// variable's file counts like the flag's.
func TestNewKeyPassphraseLength(t *testing.T) {
	short := passFile(t, "pw")
	for _, args := range [][]string{
		{"enroll", "--server", "http://127.0.0.1:1", "--code", "ABCD", "--passphrase-file", short},
		{"link", "--server", "http://127.0.0.1:1", "--user", "alice"},
	} {
		t.Setenv("KEYHOLDER_DEVICE_PASSPHRASE_FILE", short)
		home := filepath.Join(t.TempDir(), "device")
		r := run(append(args, "--home", home)...)
		if r.Code != clihome.ExitError || !strings.Contains(r.Stderr, "the passphrase in "+short+" has 2 characters: a key passphrase needs at least 8") {
			t.Errorf("%s with a short passphrase: %d\n%s", args[0], r.Code, r.Stderr)
		}
		if _, err := os.Stat(filepath.Join(home, keyFile)); !os.IsNotExist(err) {
			t.Errorf("%s stored a key: %v", args[0], err)
		}
	}
}

// TestDeviceCommands: a device enrolled with the CLI lists its requests,
// records and grants and shows itself as JSON; a link request that no
// device answers times out (exit 4), one refused exits 3.
func TestDeviceCommands(t *testing.T) {
	e := newSimEnv(t)
	ctx := context.Background()
	u, err := e.admin.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "device")
	pass := passFile(t, "phone passphrase")
	t.Setenv("KEYHOLDER_DEVICE_HOME", home)
	t.Setenv("KEYHOLDER_DEVICE_PASSPHRASE_FILE", pass)
	if r := run("enroll", "--server", e.ts.URL, "--code", u.Code); r.Code != 0 {
		t.Fatalf("enroll: %d\n%s", r.Code, r.Stderr)
	}
	lab, _ := e.newParty(ctx, "lab", genKey(t, "lab"))
	rec := e.seal(ctx, lab, u.ID, "results")

	var reqs api.RequestList
	clitest.DecodeOne(t, run("requests", "--json").Stdout, &reqs)
	if len(reqs.Requests) != 1 || reqs.Requests[0].RecordID != rec || reqs.Requests[0].Kind != client.KindApproval {
		t.Fatalf("requests --json: %+v", reqs)
	}
	var recs api.RecordList
	clitest.DecodeOne(t, run("records", "--json").Stdout, &recs)
	if len(recs.Records) != 1 || recs.Records[0].ID != rec || recs.Records[0].State != api.StatePending {
		t.Fatalf("records --json: %+v", recs)
	}
	var grants api.GrantList
	clitest.DecodeOne(t, run("grants", "--json").Stdout, &grants)
	if grants.Grants == nil || len(grants.Grants) != 0 {
		t.Fatalf("grants --json with none: %+v", grants)
	}
	var me shown
	clitest.DecodeOne(t, run("show", "--json").Stdout, &me)
	if me.UserID != u.ID || me.Fingerprint == "" || me.Chain.FirstDevice != me.Fingerprint || len(me.Chain.Keys) != 1 || me.Server != e.ts.URL {
		t.Fatalf("show --json: %+v", me)
	}

	// Approve, grant, list the grant, revoke it.
	if r := run("run", "--once", "--auto-approve"); r.Code != 0 {
		t.Fatalf("run --once: %d\n%s", r.Code, r.Stderr)
	}
	if _, err := lab.RequestAccess(ctx, rec, "look", 3600); err != nil {
		t.Fatal(err)
	}
	if r := run("run", "--once", "--auto-approve"); r.Code != 0 {
		t.Fatalf("run --once: %d\n%s", r.Code, r.Stderr)
	}
	clitest.DecodeOne(t, run("grants", "--json").Stdout, &grants)
	if len(grants.Grants) != 1 || grants.Grants[0].RecordID != rec || grants.Grants[0].Purpose != "look" {
		t.Fatalf("grants --json: %+v", grants)
	}
	var revoked api.Grant
	clitest.DecodeOne(t, run("revoke", grants.Grants[0].ID, "--json").Stdout, &revoked)
	if revoked.ID != grants.Grants[0].ID || revoked.Revoked == nil {
		t.Fatalf("revoke --json: %+v", revoked)
	}

	// A second phone: nobody answers its link request in time.
	link := func(timeout string) clitest.Result {
		return run("link", "--home", filepath.Join(t.TempDir(), "phone2"), "--server", e.ts.URL, "--user", "alice", "--timeout", timeout)
	}
	if r := link("300ms"); r.Code != clihome.ExitTimedOut || !strings.Contains(r.Stderr, "no device approved this one within 300ms") {
		t.Fatalf("link without an answer: %d\n%s", r.Code, r.Stderr)
	}
	// The first device refuses the next one.
	_, first, err := open(ctx, home, pass)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan clitest.Result, 1)
	go func() { done <- link("30s") }()
	refused := 0
	waitUntil(t, "the link request reaches the first device", func() bool {
		rs, err := first.DeviceRequests(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range rs {
			if q.Kind != client.KindDevice {
				continue
			}
			// The timed-out request above is still open: refuse both.
			if _, err := first.Refuse(ctx, q.ID); err == nil {
				refused++
			}
		}
		return refused == 2
	})
	if r := <-done; r.Code != clihome.ExitRefused || !strings.Contains(r.Stderr, "the link request was refused") {
		t.Fatalf("refused link: %d\n%s", r.Code, r.Stderr)
	}
}
