package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/clihome/clitest"
	"github.com/keyholder/keyholder/internal/server/servertest"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

const cliAdminToken = "cli-test-admin-token"

// cliEnv is a server in this process, a party home for the CLI, and a
// device (an SDK client) of user alice.
type cliEnv struct {
	t    *testing.T
	ts   *httptest.Server
	srv  *servertest.Server
	home string
	user string
	dev  *client.Client
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	return newCLIEnvWith(t, nil)
}

// newCLIEnvWith is newCLIEnv with the server's handler wrapped by wrap.
func newCLIEnvWith(t *testing.T, wrap func(http.Handler) http.Handler) *cliEnv {
	t.Helper()
	srv := servertest.Start(t, cliAdminToken, wrap)
	ts := srv.Server
	e := &cliEnv{t: t, ts: ts, srv: srv, home: filepath.Join(t.TempDir(), "party")}
	t.Setenv("KEYHOLDER_SERVER", ts.URL)
	t.Setenv("KEYHOLDER_HOME", e.home)
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "")

	ctx := context.Background()
	admin, err := client.New(ts.URL, client.WithAdminToken(cliAdminToken))
	if err != nil {
		t.Fatal(err)
	}
	u, err := admin.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	k, err := envelope.GenerateKey("phone")
	if err != nil {
		t.Fatal(err)
	}
	id, err := client.IdentityFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if e.dev, err = client.New(ts.URL, client.WithIdentity(id)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dev.Enroll(ctx, u.Code, "", ""); err != nil {
		t.Fatal(err)
	}
	e.user = u.ID
	e.must("keygen", "--name", "Acme Lab", "--no-passphrase")
	e.must("register", "--admin-token", cliAdminToken)
	return e
}

// run runs the CLI in this process and returns its stdout, stderr and error.
func (e *cliEnv) run(args ...string) (string, string, error) {
	e.t.Helper()
	var err error
	out, errOut := clitest.Capture("", func() {
		cmd := rootCmd()
		cmd.SetArgs(args)
		err = cmd.ExecuteContext(context.Background())
	})
	return out, errOut, err
}

// exec runs the CLI as its main function does, with stdin on its
// standard input, and returns what it printed and its exit code.
func (e *cliEnv) exec(stdin string, args ...string) clitest.Result {
	e.t.Helper()
	return run(stdin, args...)
}

func (e *cliEnv) must(args ...string) string {
	e.t.Helper()
	out, errOut, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("keyholder %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// answer answers every open request of the device: approve or grant, or
// refuse access requests when refuse is set.
func (e *cliEnv) answer(refuse bool) int {
	e.t.Helper()
	ctx := context.Background()
	reqs, err := e.dev.DeviceRequests(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range reqs {
		d, err := e.dev.DeviceRequest(ctx, r.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		cr, err := e.dev.Check(ctx, d)
		if err != nil {
			e.t.Fatal(err)
		}
		switch {
		case d.Kind == client.KindApproval:
			_, err = e.dev.ApproveRequest(ctx, cr)
		case refuse:
			_, err = e.dev.Refuse(ctx, d.ID)
		default:
			_, err = e.dev.GrantRequest(ctx, cr, time.Time{})
		}
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return len(reqs)
}

func (e *cliEnv) file(name, content string) string {
	p := filepath.Join(e.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// TestRequestWaitsForItsOwnAnswer: `keyholder request --wait` reports the
// answer to the request it made. Before, it waited for any valid grant, so
// a party holding an older grant was told "granted" when the phone had
// refused (or not yet answered) the new request.
func TestRequestWaitsForItsOwnAnswer(t *testing.T) {
	e := newCLIEnv(t)
	rec := strings.TrimSpace(e.must("seal", e.file("r.txt", "results"), "--to", e.user))
	e.answer(false)
	e.must("request", rec, "--purpose", "first look", "--expires", "1h")
	e.answer(false) // granted: the party now holds a valid grant

	done := make(chan error, 1)
	var errOut string
	go func() {
		var err error
		_, errOut, err = e.run("request", rec, "--purpose", "second look", "--wait", "--timeout", "30s")
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for e.answer(true) == 0 { // refuse the new request once it is there
		select {
		case err := <-done:
			t.Fatalf("request --wait returned before the device answered: %v\n%s", err, errOut)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the access request never reached the device")
		}
		time.Sleep(20 * time.Millisecond)
	}
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("request --wait after a refusal: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "waiting up to 30s for the user's device to answer request") {
		t.Errorf("request --wait does not say what it waits for:\n%s", errOut)
	}
}

// TestSealRetryReportsStoredRecord: the same `keyholder seal
// --idempotency-key` run again (its answer was lost) prints the record it
// stored the first time, sends nothing, and succeeds; before, it sealed
// again and failed with 409 "used for a different upload".
func TestSealRetryReportsStoredRecord(t *testing.T) {
	e := newCLIEnv(t)
	f := e.file("r.txt", "results")
	first := e.must("seal", f, "--to", e.user, "--idempotency-key", "lab-order-1")
	out, errOut, err := e.run("seal", f, "--to", e.user, "--idempotency-key", "lab-order-1")
	if err != nil {
		t.Fatalf("retry: %v\n%s", err, errOut)
	}
	if out != first || !strings.Contains(errOut, "already uploaded") {
		t.Fatalf("retry printed %q (first %q)\n%s", out, first, errOut)
	}
}

// TestWaitSaysWhatItWaitsFor: `keyholder wait` tells what it waits for
// before it waits (it printed nothing).
func TestWaitSaysWhatItWaitsFor(t *testing.T) {
	e := newCLIEnv(t)
	rec := strings.TrimSpace(e.must("seal", e.file("r.txt", "results"), "--to", e.user))
	_, errOut, err := e.run("wait", rec, "--timeout", "200ms")
	if err == nil || !strings.Contains(err.Error(), "still pending") {
		t.Fatalf("wait on a pending record: %v", err)
	}
	if !strings.Contains(errOut, "waiting up to 200ms for the user's device to approve or reject record "+rec) {
		t.Fatalf("wait printed:\n%s", errOut)
	}
}
