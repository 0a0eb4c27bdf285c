package daemon

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/clihome/clitest"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// run runs keyholderd as main does.
func run(stdin string, args ...string) clitest.Result {
	return clitest.Run("keyholderd", rootCmd(), stdin, args...)
}

func TestVersionHelpAndExitCodes(t *testing.T) {
	if r := run("", "--version"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "keyholderd version ") {
		t.Fatalf("--version: %d %q", r.Code, r.Stdout)
	}
	help := run("", "--help").Stdout
	for _, want := range []string{"Exit codes:", "2  usage", "5  could not reach the server"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not say %q:\n%s", want, help)
		}
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"bogus"}, clihome.ExitUsage},
		{[]string{"serve", "--bogus"}, clihome.ExitUsage},
		{[]string{"admin", "user", "list", "extra"}, clihome.ExitUsage},
		{[]string{"admin", "--server", "http://" + freeAddr(t), "--admin-token", "x", "user", "list"}, clihome.ExitUnreachable},
		{[]string{"admin", "--data-dir", t.TempDir(), "--admin-token", "", "party", "list"}, clihome.ExitError},
	} {
		if r := run("", c.args...); r.Code != c.code || !strings.HasPrefix(r.Stderr, "keyholderd: ") {
			t.Errorf("keyholderd %s: exit %d, want %d\n%s", strings.Join(c.args, " "), r.Code, c.code, r.Stderr)
		}
	}
}

// TestAdminLists: the admin list commands print a table, or with --json
// the admin API's answer in the API's types; party create reads the key
// from stdin with -.
func TestAdminLists(t *testing.T) {
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")
	os.Unsetenv("KEYHOLDER_ADMIN_TOKEN")
	addr, dir, stop := startServe(t)
	defer stop()
	admin := func(stdin string, args ...string) clitest.Result {
		t.Helper()
		r := run(stdin, append([]string{"admin", "--server", "http://" + addr, "--data-dir", dir, "--no-qr"}, args...)...)
		if r.Code != 0 {
			t.Fatalf("admin %s: %d\n%s", strings.Join(args, " "), r.Code, r.Stderr)
		}
		return r
	}
	admin("", "user", "create", "alice")
	k, err := envelope.GenerateKey("Acme Lab")
	if err != nil {
		t.Fatal(err)
	}
	admin(string(k.Public().Armor()), "party", "create", "Acme Lab", "-")

	var users userList
	clitest.DecodeOne(t, admin("", "user", "list", "--json").Stdout, &users)
	if len(users.Users) != 1 || users.Users[0].Handle != "alice" {
		t.Fatalf("user list --json: %+v", users)
	}
	if out := admin("", "user", "list").Stdout; !strings.HasPrefix(out, "USER ") || !strings.Contains(out, users.Users[0].ID+"  alice") {
		t.Fatalf("user list:\n%s", out)
	}
	var devices deviceList
	clitest.DecodeOne(t, admin("", "user", "devices", users.Users[0].ID, "--json").Stdout, &devices)
	if devices.Devices == nil || len(devices.Devices) != 0 {
		t.Fatalf("user devices --json: %+v", devices)
	}
	var parties partyList
	clitest.DecodeOne(t, admin("", "party", "list", "--json").Stdout, &parties)
	if len(parties.Parties) != 1 || parties.Parties[0].Fingerprint != k.Fingerprint() {
		t.Fatalf("party list --json: %+v", parties)
	}
	if out := admin("", "party", "list").Stdout; !strings.Contains(out, k.Fingerprint()) || !strings.Contains(out, "Acme Lab") {
		t.Fatalf("party list:\n%s", out)
	}

	// Pages: --limit 1 prints one user and how to go on; --cursor goes on;
	// --all reads every page.
	admin("", "user", "create", "bob")
	first := admin("", "user", "list", "--limit", "1")
	if strings.Count(first.Stdout, "\n") != 2 || !strings.Contains(first.Stdout, "alice") || !strings.Contains(first.Stderr, "--cursor ") {
		t.Fatalf("user list --limit 1:\n%s\n%s", first.Stdout, first.Stderr)
	}
	var page userList
	clitest.DecodeOne(t, admin("", "user", "list", "--limit", "1", "--json").Stdout, &page)
	if len(page.Users) != 1 || page.NextCursor == "" {
		t.Fatalf("user list --limit 1 --json: %+v", page)
	}
	second := admin("", "user", "list", "--limit", "1", "--cursor", page.NextCursor)
	if !strings.Contains(second.Stdout, "bob") || strings.Contains(second.Stdout, "alice") || second.Stderr != "" {
		t.Fatalf("user list --cursor:\n%s\n%s", second.Stdout, second.Stderr)
	}
	var all userList
	clitest.DecodeOne(t, admin("", "user", "list", "--limit", "1", "--all", "--json").Stdout, &all)
	if len(all.Users) != 2 || all.NextCursor != "" {
		t.Fatalf("user list --all: %+v", all)
	}
	if r := run("", "admin", "--server", "http://"+addr, "--data-dir", dir, "user", "list", "--limit", "5000"); r.Code == 0 || !strings.Contains(r.Stderr, "--limit") {
		t.Fatalf("user list --limit 5000: exit %d\n%s", r.Code, r.Stderr)
	}
}

// TestAdminTimesOut: a server that takes the request and never answers
// ends the admin command with exit code 4 once adminTimeout ran out, and
// the request's context is cancelled (the client does not linger).
func TestAdminTimesOut(t *testing.T) {
	cancelled := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(cancelled)
	}))
	defer ts.Close()
	defer func(d time.Duration) { adminTimeout = d }(adminTimeout)
	adminTimeout = 200 * time.Millisecond
	r := run("", "admin", "--server", ts.URL, "--admin-token", "x", "user", "list")
	if r.Code != clihome.ExitTimedOut {
		t.Fatalf("exit %d, want %d\n%s", r.Code, clihome.ExitTimedOut, r.Stderr)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the request was not cancelled")
	}
}

// TestAdminServerProblem: the server's problem reaches the operator as the
// SDK reports it, status and detail included.
func TestAdminServerProblem(t *testing.T) {
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")
	os.Unsetenv("KEYHOLDER_ADMIN_TOKEN")
	addr, _, stop := startServe(t)
	defer stop()
	r := run("", "admin", "--server", "http://"+addr, "--admin-token", "wrong", "user", "list")
	if r.Code != clihome.ExitError || !strings.Contains(r.Stderr, "(HTTP 401)") {
		t.Fatalf("wrong admin token: exit %d\n%s", r.Code, r.Stderr)
	}
}
