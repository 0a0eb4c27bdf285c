package statement

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/envelope"
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

// importKeys imports the public keys into gpg's keyring.
func (g *stmtGPG) importKeys(keys ...*envelope.Key) {
	g.t.Helper()
	for _, k := range keys {
		keyFile := filepath.Join(g.t.TempDir(), "key.asc")
		if err := os.WriteFile(keyFile, k.Public().Armor(), 0o600); err != nil {
			g.t.Fatal(err)
		}
		if _, stderr, err := g.run("--import", keyFile); err != nil {
			g.t.Fatalf("gpg --import: %v\n%s", err, stderr)
		}
	}
}

// verify runs `gpg --verify sig statement` on files holding st and sig,
// and returns gpg's status lines.
func (g *stmtGPG) verify(st, sig []byte) (status string, err error) {
	g.t.Helper()
	dir := g.t.TempDir()
	stFile, sigFile := filepath.Join(dir, "statement"), filepath.Join(dir, "statement.sig")
	if err := os.WriteFile(stFile, st, 0o600); err != nil {
		g.t.Fatal(err)
	}
	if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
		g.t.Fatal(err)
	}
	status, _, err = g.run("--status-fd", "1", "--verify", sigFile, stFile)
	return status, err
}

// wantGood asserts that gpg accepted a binary SHA-256 signature by signer
// over st.
func (g *stmtGPG) wantGood(what string, st, sig []byte, signer *envelope.Key) {
	g.t.Helper()
	status, err := g.verify(st, sig)
	if err != nil {
		g.t.Fatalf("%s: gpg --verify failed: %v\nstatus:\n%s", what, err, status)
	}
	if !strings.Contains(status, "[GNUPG:] GOODSIG ") {
		g.t.Errorf("%s: no GOODSIG:\n%s", what, status)
	}
	valid := stmtStatusLine(status, "VALIDSIG")
	f := strings.Fields(valid)
	// VALIDSIG <signing key fpr> <date> <timestamp> <expire> <version>
	//          <reserved> <pk algo> <hash algo> <class> <primary key fpr>
	if len(f) != 12 || f[2] != signer.Fingerprint() || f[9] != "8" || f[10] != "00" || f[11] != signer.Fingerprint() {
		g.t.Errorf("%s: VALIDSIG does not name the key %s with a binary SHA-256 signature:\n%s", what, signer.Fingerprint(), valid)
	}
}

// wantBad asserts that gpg refused sig over st as a bad signature, and
// that Verify refuses it too.
func (g *stmtGPG) wantBad(what string, st, sig []byte, signer *envelope.Key) {
	g.t.Helper()
	status, err := g.verify(st, sig)
	if err == nil {
		g.t.Errorf("%s: gpg --verify accepted it:\n%s", what, status)
	}
	if !strings.Contains(status, "[GNUPG:] BADSIG ") || strings.Contains(status, "GOODSIG") || strings.Contains(status, "VALIDSIG") {
		g.t.Errorf("%s: want BADSIG only:\n%s", what, status)
	}
	stmtWantBadSig(g.t, what, Verify(st, sig, signer))
}

// TestGnuPGVerifyStatement checks that `gpg --verify` accepts a statement
// signature made by Sign, names the device key, and refuses the signature
// once the statement is changed.
func TestGnuPGVerifyStatement(t *testing.T) {
	g := newStmtGPG(t)
	device := stmtKey(t, "Keyholder device")
	g.importKeys(device)

	for _, ex := range stmtExamples() {
		s := ex.s
		if a, ok := s.(*Approval); ok {
			a.Device = device.Fingerprint()
		}
		st := stmtMarshal(t, s)
		sig := stmtSign(t, st, device)
		g.wantGood(ex.file, st, sig, device)

		// Change the statement, keep the signature: gpg refuses. Change the
		// last character of the first value (an id), which keeps the
		// statement canonical.
		edited := bytes.Clone(st)
		first := bytes.IndexByte(st, '\n')
		edited[first+1+bytes.IndexByte(st[first+1:], '\n')-1] ^= 1
		g.wantBad(ex.file+" edited", edited, sig, device)
	}
}

// TestGnuPGVerifyChainLink: a real key chain, checked with gpg alone. The
// first device adds itself, then adds a second device, which sets the
// recovery key; each link names the SHA-256 of the one before and binds
// the added key's bytes. gpg accepts every link with its signer's key, and
// refuses each link with any field edited: another action, another key,
// another place in the chain.
func TestGnuPGVerifyChainLink(t *testing.T) {
	g := newStmtGPG(t)
	device, device2, recovery := stmtKey(t, "first device"), stmtKey(t, "second device"), stmtKey(t, "recovery")
	g.importKeys(device, device2)

	now := time.Now().UTC().Truncate(time.Second)
	type signed struct {
		link   *ChainLink
		st     []byte
		sig    []byte
		signer *envelope.Key
	}
	var chain []signed
	for i, step := range []struct {
		action      string
		key, signer *envelope.Key
	}{
		{ActionAddDevice, device, device},
		{ActionAddDevice, device2, device},
		{ActionSetRecovery, recovery, device2},
	} {
		l := &ChainLink{User: stmtUser, Seq: int64(i), Action: step.action, Key: step.key.Fingerprint(),
			KeySHA256: sha256.Sum256(step.key.Public().Bytes()), Signer: step.signer.Fingerprint(), Time: now.Add(time.Duration(i) * time.Minute)}
		if i > 0 {
			l.Prev = sha256.Sum256(chain[i-1].st)
		}
		st := stmtMarshal(t, l)
		chain = append(chain, signed{l, st, stmtSign(t, st, step.signer), step.signer})
	}
	for _, c := range chain {
		what := fmt.Sprintf("link %d (%s)", c.link.Seq, c.link.Action)
		g.wantGood(what, c.st, c.sig, c.signer)
		// Signed by the right kind of key is not enough: by another device
		// of the same user, it is not this link's signature.
		for _, other := range []*envelope.Key{device, device2} {
			if other != c.signer {
				stmtWantBadSig(t, what+" checked against another device", Verify(c.st, c.sig, other))
			}
		}
		for _, edit := range []struct {
			name string
			f    func(*ChainLink)
		}{
			{"another user", func(l *ChainLink) { l.User = "another-user" }},
			{"another place", func(l *ChainLink) {
				if l.Seq++; l.Prev == ([32]byte{}) {
					l.Prev = sha256.Sum256([]byte("an earlier link"))
				}
			}},
			{"another predecessor", func(l *ChainLink) { l.Seq, l.Prev = 1, sha256.Sum256([]byte("forked")) }},
			{"revoke instead", func(l *ChainLink) { l.Action = ActionRevokeDevice }},
			{"another key", func(l *ChainLink) { l.Key = stmtDevice2 }},
			{"another key's bytes", func(l *ChainLink) { l.KeySHA256[0] ^= 1 }},
			{"another signer", func(l *ChainLink) { l.Signer = stmtDevice }},
			{"later", func(l *ChainLink) { l.Time = l.Time.Add(time.Second) }},
		} {
			l := *c.link
			edit.f(&l)
			g.wantBad(what+": "+edit.name, stmtMarshal(t, &l), c.sig, c.signer)
		}
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
	party, err := envelope.ParseKey([]byte(gpg("--armor", "--export", fpr)))
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
