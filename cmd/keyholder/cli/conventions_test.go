package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/clihome/clitest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// run runs keyholder as its main function does, outside any cliEnv.
func run(stdin string, args ...string) clitest.Result {
	return clitest.Run("keyholder", rootCmd(), stdin, args...)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestVersion(t *testing.T) {
	r := run("", "--version")
	bi, _ := debug.ReadBuildInfo()
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "keyholder version ") || !strings.Contains(r.Stdout, bi.GoVersion) {
		t.Fatalf("--version: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestExitCodes runs commands as the keyholder binary does and checks the
// exit code of each kind of failure, as the root's help documents them.
func TestExitCodes(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	rejected := strings.TrimSpace(e.must("seal", e.file("r.txt", "rejected"), "--to", e.user))
	reqs, err := e.dev.DeviceRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range reqs {
		if q.RecordID != rejected {
			continue
		}
		d, err := e.dev.DeviceRequest(ctx, q.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.dev.RejectRequest(ctx, d, "not-mine"); err != nil {
			t.Fatal(err)
		}
	}
	refused := strings.TrimSpace(e.must("seal", e.file("x.txt", "approved"), "--to", e.user))
	e.answer(false) // approves it
	e.must("request", refused, "--purpose", "look")
	e.answer(true) // refuses the access request
	pending := strings.TrimSpace(e.must("seal", e.file("p.txt", "pending"), "--to", e.user))

	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown command", []string{"bogus"}, clihome.ExitUsage, "unknown command"},
		{"unknown flag", []string{"records", "--bogus"}, clihome.ExitUsage, "unknown flag"},
		{"missing argument", []string{"seal"}, clihome.ExitUsage, "accepts 1 arg"},
		{"missing flag", []string{"seal", "-"}, clihome.ExitUsage, "--to USER is required"},
		{"malformed argument", []string{"pin", "alice"}, clihome.ExitUsage, "is not a user id"},
		{"handle for an id", []string{"seal", "-", "--to", "alice"}, clihome.ExitUsage, `--to: "alice" is not a user id: give the user's id`},
		{"handle for an id (upload)", []string{"upload", "-", "--to", "alice"}, clihome.ExitUsage, `--to: "alice" is not a user id`},
		{"rejected", []string{"wait", rejected, "--timeout", "10s"}, clihome.ExitRefused, "was rejected by device"},
		{"refused", []string{"open", refused, "-o", filepath.Join(t.TempDir(), "out")}, clihome.ExitRefused, "refused access request"},
		{"timed out", []string{"wait", pending, "--timeout", "100ms"}, clihome.ExitTimedOut, "still pending after 100ms"},
		{"unreachable", []string{"records", "--server", clitest.ClosedURL(t)}, clihome.ExitUnreachable, "connection refused"},
		{"other", []string{"status", strings.Repeat("0", 32)}, clihome.ExitError, "HTTP 404"},
	} {
		r := e.exec("", c.args...)
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if last := lines[len(lines)-1]; r.Code != c.code || !strings.Contains(last, c.msg) || !strings.HasPrefix(last, "keyholder: ") {
			t.Errorf("%s: keyholder %s exited %d (want %d):\n%s", c.name, strings.Join(c.args, " "), r.Code, c.code, r.Stderr)
		}
	}
	help := e.exec("", "--help")
	for _, want := range []string{"Exit codes:", "3  refused or rejected", "4  timed out", "5  could not reach the server"} {
		if !strings.Contains(help.Stdout, want) {
			t.Errorf("--help does not say %q:\n%s", want, help.Stdout)
		}
	}
}

// TestRequestWaitExitCodes: request --wait exits 3 when the device
// refuses, 4 when it does not answer in time.
func TestRequestWaitExitCodes(t *testing.T) {
	e := newCLIEnv(t)
	rec := strings.TrimSpace(e.must("seal", e.file("r.txt", "results"), "--to", e.user))
	e.answer(false)
	r := e.exec("", "request", rec, "--purpose", "look", "--wait", "--timeout", "100ms", "--json")
	var st api.AccessStatus
	if r.Code != clihome.ExitTimedOut || !strings.Contains(r.Stderr, "is still open after 100ms") || r.Stdout != "" {
		t.Fatalf("no answer: %d %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
	e.answer(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r = e.exec("", "request", rec, "--purpose", "again", "--wait", "--timeout", "30s", "--json")
	}()
	waitFor(t, func() bool { return e.answer(true) > 0 })
	<-done
	if r.Code != clihome.ExitRefused || !strings.Contains(r.Stderr, "the user refused request") {
		t.Fatalf("refused: %d\n%s", r.Code, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Answer != "refused" || st.RecordID != rec {
		t.Fatalf("request --wait --json printed %q (%v)", r.Stdout, err)
	}
}

// TestJSON: the commands that print records, grants and requests print
// one JSON document of the API's types with --json.
func TestJSON(t *testing.T) {
	e := newCLIEnv(t)
	var sealed api.Record
	clitest.DecodeOne(t, e.must("seal", e.file("r.txt", "results"), "--to", e.user, "--json"), &sealed)
	if sealed.ID == "" || sealed.State != api.RecordPending || sealed.UserID != e.user {
		t.Fatalf("seal --json: %+v", sealed)
	}
	e.answer(false)
	var waited, status api.Record
	clitest.DecodeOne(t, e.must("wait", sealed.ID, "--json"), &waited)
	clitest.DecodeOne(t, e.must("status", sealed.ID, "--json"), &status)
	if waited.State != api.RecordApproved || status.ID != sealed.ID || status.DecisionSignature == "" {
		t.Fatalf("wait --json %+v, status --json %+v", waited, status)
	}
	var ar api.AccessResponse
	clitest.DecodeOne(t, e.must("request", sealed.ID, "--purpose", "look", "--json"), &ar)
	if ar.RecordID != sealed.ID || ar.RequestID == "" {
		t.Fatalf("request --json: %+v", ar)
	}
	e.answer(false)
	var rl api.RecordList
	clitest.DecodeOne(t, e.must("records", "--json"), &rl)
	if len(rl.Records) != 1 || rl.Records[0].ID != sealed.ID {
		t.Fatalf("records --json: %+v", rl)
	}
	var gl api.GrantList
	clitest.DecodeOne(t, e.must("grants", "--json"), &gl)
	if len(gl.Grants) != 1 || gl.Grants[0].RecordID != sealed.ID || gl.Grants[0].Purpose != "look" {
		t.Fatalf("grants --json: %+v", gl)
	}
	var v verified
	clitest.DecodeOne(t, e.must("verify", sealed.ID, "--json"), &v)
	dev := e.dev.Identity().Fingerprint()
	if v.Record == nil || v.Record.ID != sealed.ID || v.ApprovalDevice != dev || v.Grant == nil || v.Grant.ID != gl.Grants[0].ID || v.GrantDevice != dev {
		t.Fatalf("verify --json: %+v", v)
	}
	var keys clihome.VerifiedChain
	clitest.DecodeOne(t, e.must("keys", e.user, "--json"), &keys)
	if keys.UserID != e.user || keys.FirstDevice != dev || keys.Links != 1 || len(keys.Keys) != 1 || keys.Keys[0].Fingerprint != dev || keys.Keys[0].Role != "device" {
		t.Fatalf("keys --json: %+v", keys)
	}
	// Empty lists are [], not null.
	f := newCLIEnv(t)
	if out := f.must("records", "--json"); !strings.Contains(out, `"records": []`) {
		t.Fatalf("records --json with none: %s", out)
	}
}

// TestStdio: "-" is stdin for seal and upload, stdout for open and fetch;
// open -o - writes the plaintext only after every check.
func TestStdio(t *testing.T) {
	e := newCLIEnv(t)
	plain := strings.Repeat("Haemoglobin 14.1 g/dL\n", 100000) // 2.2 MB
	r := e.exec(plain, "seal", "-", "--to", e.user)
	if r.Code != 0 {
		t.Fatalf("seal -: %d\n%s", r.Code, r.Stderr)
	}
	rec := strings.TrimSpace(r.Stdout)
	if !strings.Contains(r.Stderr, "sealed 2.1 MiB") {
		t.Errorf("seal - does not say what it sealed:\n%s", r.Stderr)
	}
	e.answer(false)
	e.must("request", rec, "--purpose", "look")
	e.answer(false)

	r = e.exec("", "open", rec, "-o", "-")
	if r.Code != 0 || r.Stdout != plain || !strings.Contains(r.Stderr, "into stdout") {
		t.Fatalf("open -o -: %d, %d bytes\n%s", r.Code, len(r.Stdout), r.Stderr)
	}
	r = e.exec("", "fetch", rec, "-o", "-")
	msgFile := filepath.Join(t.TempDir(), "msg.pgp")
	e.must("fetch", rec, "-o", msgFile)
	msg, err := os.ReadFile(msgFile)
	if err != nil || r.Code != 0 || r.Stdout != string(msg) {
		t.Fatalf("fetch -o -: %d, %d bytes (file: %d, %v)\n%s", r.Code, len(r.Stdout), len(msg), err, r.Stderr)
	}

	// upload -: a message sealed elsewhere to the user's device key.
	var buf bytes.Buffer
	w, err := envelope.Seal(&buf, envelope.Compat, e.dev.Identity().Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("from elsewhere"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r = e.exec(buf.String(), "upload", "-", "--to", e.user)
	if r.Code != 0 || len(strings.TrimSpace(r.Stdout)) != 32 {
		t.Fatalf("upload -: %d %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestOpenToStdoutWritesOnlyChecked: a record whose downloaded data packet
// is not the approved one (the last byte flipped by the server) writes
// nothing to stdout, though all but the end decrypts; -o FILE leaves no
// file.
func TestOpenToStdoutWritesOnlyChecked(t *testing.T) {
	var tamper bool
	e := newCLIEnvWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !tamper || !strings.HasSuffix(r.URL.Path, "/content") {
				h.ServeHTTP(w, r)
				return
			}
			rec := &flipLast{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			rec.flush()
		})
	})
	plain := strings.Repeat("x", 3<<20)
	rec := strings.TrimSpace(e.exec(plain, "seal", "-", "--to", e.user).Stdout)
	e.answer(false)
	e.must("request", rec, "--purpose", "look")
	e.answer(false)
	tamper = true
	r := e.exec("", "open", rec, "-o", "-")
	if r.Code == 0 || r.Stdout != "" {
		t.Fatalf("open -o - of a tampered record: exit %d, %d bytes on stdout\n%s", r.Code, len(r.Stdout), r.Stderr)
	}
	out := filepath.Join(t.TempDir(), "out")
	if r := e.exec("", "open", rec, "-o", out); r.Code == 0 {
		t.Fatalf("open -o FILE of a tampered record succeeded")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("open -o FILE of a tampered record left %s: %v", out, err)
	}
}

// flipLast holds back the body's last byte and sends it flipped.
type flipLast struct {
	http.ResponseWriter
	last []byte
}

func (f *flipLast) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if f.last != nil {
		if _, err := f.ResponseWriter.Write(f.last); err != nil {
			return 0, err
		}
	}
	if _, err := f.ResponseWriter.Write(p[:len(p)-1]); err != nil {
		return 0, err
	}
	f.last = []byte{p[len(p)-1]}
	return len(p), nil
}

func (f *flipLast) flush() {
	if f.last != nil {
		f.ResponseWriter.Write([]byte{f.last[0] ^ 1})
	}
}

// TestPassphraseLength: keygen and import refuse a passphrase shorter than
// 8 characters for the key they store.
func TestPassphraseLength(t *testing.T) {
	t.Setenv("KEYHOLDER_SERVER", clitest.ClosedURL(t))
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte("pw\n"), 0o600)
	long := filepath.Join(t.TempDir(), "long")
	os.WriteFile(long, []byte("party passphrase\n"), 0o600)

	home := filepath.Join(t.TempDir(), "a")
	r := run("", "keygen", "--home", home, "--name", "Lab", "--passphrase-file", short)
	if r.Code != clihome.ExitError || !strings.Contains(r.Stderr, "has 2 characters: a key passphrase needs at least 8") {
		t.Fatalf("keygen with a short passphrase: %d\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(home, keyFile)); !os.IsNotExist(err) {
		t.Fatalf("a key was stored: %v", err)
	}

	// A key protected with "pw" elsewhere is not imported; with a long
	// passphrase it is, from stdin.
	k, err := envelope.GenerateKey("Lab")
	if err != nil {
		t.Fatal(err)
	}
	weak, err := k.MarshalPrivate([]byte("pw"), envelope.S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	r = run(string(weak), "import", "-", "--home", home, "--passphrase-file", short)
	if r.Code != clihome.ExitError || !strings.Contains(r.Stderr, "the key's passphrase has 2 characters") {
		t.Fatalf("import of a key with a short passphrase: %d\n%s", r.Code, r.Stderr)
	}
	strong, err := k.MarshalPrivate([]byte("party passphrase"), envelope.S2KIterated)
	if err != nil {
		t.Fatal(err)
	}
	r = run(string(strong), "import", "-", "--home", home, "--passphrase-file", long)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != k.Fingerprint() {
		t.Fatalf("import -: %d %q\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = run("", "keygen", "--home", filepath.Join(t.TempDir(), "b"), "--name", "Lab", "--passphrase-file", long)
	if r.Code != 0 {
		t.Fatalf("keygen with a long passphrase: %d\n%s", r.Code, r.Stderr)
	}
}
