package envelope

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stmtGPG runs gpg with a private, temporary GNUPGHOME. gpg-agent and
// dirmngr are not started for public-key operations (--no-autostart); any
// that were started are killed when the test ends.
type stmtGPG struct {
	t    *testing.T
	home string
}

// newStmtGPG returns a gpg runner, or skips the test when gpg is missing,
// unless CI=true, where the GnuPG interop tests must run.
func newStmtGPG(t *testing.T) *stmtGPG {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gpg not found, and CI=true requires the GnuPG interop tests to run: %v", err)
		}
		t.Skipf("gpg not found (install GnuPG to run the interop tests; CI=true makes this a failure): %v", err)
	}
	// A short path: gpg-agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "kh-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command("gpgconf", "--homedir", home, "--kill", "all")
			cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
			_ = cmd.Run()
		}
		os.RemoveAll(home)
	})
	return &stmtGPG{t: t, home: home}
}

// run runs gpg with args and returns its standard output (status lines
// with --status-fd 1), standard error and error.
func (g *stmtGPG) run(args ...string) (stdout, stderr string, err error) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--homedir", g.home, "--batch", "--no-tty", "--no-autostart", "--trust-model", "always"}, args...)
	cmd := exec.CommandContext(ctx, "gpg", full...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home, "LC_ALL=C")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// TestGnuPGVerifyStatement checks that `gpg --verify` accepts a statement
// signature made by Sign, names the device key, and refuses the signature
// once the statement is changed.
func TestGnuPGVerifyStatement(t *testing.T) {
	g := newStmtGPG(t)
	device := stmtKey(t, "Keyholder device")

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "device.asc")
	if err := os.WriteFile(keyFile, device.Armor(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := g.run("--import", keyFile); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, stderr)
	}

	for _, s := range []stmtMarshaler{stmtApproval(), stmtRejection(), stmtGrant(), stmtSubmission()} {
		a, ok := s.(*Approval)
		if ok {
			a.Device = device.Fingerprint()
		}
		st := stmtMarshal(t, s)
		sig := stmtSign(t, st, device)
		stFile, sigFile := filepath.Join(dir, "statement"), filepath.Join(dir, "statement.sig")
		if err := os.WriteFile(stFile, st, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
			t.Fatal(err)
		}

		status, stderr, err := g.run("--status-fd", "1", "--verify", sigFile, stFile)
		if err != nil {
			t.Fatalf("%T: gpg --verify failed: %v\nstatus:\n%s\nstderr:\n%s", s, err, status, stderr)
		}
		if !strings.Contains(status, "[GNUPG:] GOODSIG ") {
			t.Errorf("%T: no GOODSIG:\n%s", s, status)
		}
		valid := stmtStatusLine(status, "VALIDSIG")
		f := strings.Fields(valid)
		// VALIDSIG <signing key fpr> <date> <timestamp> <expire> <version>
		//          <reserved> <pk algo> <hash algo> <class> <primary key fpr>
		if len(f) != 12 || f[2] != device.Fingerprint() || f[9] != "8" || f[10] != "00" || f[11] != device.Fingerprint() {
			t.Errorf("%T: VALIDSIG does not name the device key %s with a binary SHA-256 signature:\n%s", s, device.Fingerprint(), valid)
		}

		// Change the statement, keep the signature: gpg refuses. Change the last character of the first value (an id), which
		// keeps the statement canonical.
		edited := bytes.Clone(st)
		first := bytes.IndexByte(st, '\n')
		edited[first+1+bytes.IndexByte(st[first+1:], '\n')-1] ^= 1
		if err := os.WriteFile(stFile, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		status, _, err = g.run("--status-fd", "1", "--verify", sigFile, stFile)
		if err == nil {
			t.Errorf("%T: gpg --verify accepted an edited statement:\n%s", s, status)
		}
		if !strings.Contains(status, "[GNUPG:] BADSIG ") || strings.Contains(status, "GOODSIG") || strings.Contains(status, "VALIDSIG") {
			t.Errorf("%T: edited statement: want BADSIG only:\n%s", s, status)
		}
		// And so does Verify.
		stmtWantBadSig(t, "edited statement", Verify(edited, sig, device))
	}
}

// TestGnuPGSignedStatement checks the other direction: a statement signed
// by `gpg --detach-sign` with a key GnuPG generated (as a party using its
// own tools would) verifies with Verify, armored and binary.
func TestGnuPGSignedStatement(t *testing.T) {
	g := newStmtGPG(t)
	dir := t.TempDir()
	// Key generation and signing need gpg-agent: allow it to start here
	// (the cleanup kills it).
	gpg := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		full := append([]string{"--homedir", g.home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)
		cmd := exec.CommandContext(ctx, "gpg", full...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home, "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	gpg("--quick-gen-key", "Example Party <party@example.org>", "future-default", "default", "never")
	fpr := ""
	for _, l := range strings.Split(gpg("--with-colons", "--list-keys"), "\n") {
		if strings.HasPrefix(l, "fpr:") {
			fpr = strings.Split(l, ":")[9]
			break
		}
	}
	party, err := ParseKey([]byte(gpg("--armor", "--export", fpr)))
	if err != nil {
		t.Fatalf("parsing the GnuPG key: %v", err)
	}
	if party.Fingerprint() != fpr {
		t.Fatalf("fingerprint %s, gpg says %s", party.Fingerprint(), fpr)
	}
	s := stmtSubmission()
	s.Submitter = fpr
	st := stmtMarshal(t, s)
	stFile := filepath.Join(dir, "submission")
	if err := os.WriteFile(stFile, st, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, armor := range []bool{true, false} {
		sigFile := filepath.Join(dir, "submission.sig")
		os.Remove(sigFile)
		args := []string{"--detach-sign", "--digest-algo", "SHA256", "-o", sigFile}
		if armor {
			args = append([]string{"--armor"}, args...)
		}
		gpg(append(args, stFile)...)
		sig, err := os.ReadFile(sigFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(st, sig, party); err != nil {
			t.Errorf("armor=%v: Verify refused a GnuPG signature: %v", armor, err)
		}
		stmtWantBadSig(t, "GnuPG signature, other key", Verify(st, sig, stmtKey(t, "other")))
		s2 := *s
		s2.User = "someone-else"
		stmtWantBadSig(t, "GnuPG signature, edited statement", Verify(stmtMarshal(t, &s2), sig, party))
	}
}

// stmtStatusLine returns the first "[GNUPG:] <keyword> ..." line of status.
func stmtStatusLine(status, keyword string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "[GNUPG:] "+keyword+" ") {
			return l
		}
	}
	return ""
}
