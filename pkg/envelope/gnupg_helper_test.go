package envelope

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// gnupg runs the real gpg binary in a private, temporary GNUPGHOME (mode
// 0700), for the GnuPG interop tests. One instance serves one test; the
// agent it starts is killed when the test ends.
type gnupg struct {
	t    testing.TB
	home string // GNUPGHOME
	dir  string // scratch files for messages and keys
}

// newGnuPG returns a gpg runner. When gpg is not installed it fails the
// test under CI (CI=true), where the interop tests must run, and skips it
// elsewhere.
func newGnuPG(t testing.TB) *gnupg {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gpg is not installed, and CI=true requires the GnuPG interop tests to run (apt-get install -y gnupg): %v", err)
		}
		t.Skipf("gpg is not installed: skipping the GnuPG interop test (install GnuPG to run it; under CI=true this is a failure)")
	}
	// os.MkdirTemp rather than t.TempDir: gpg-agent puts its socket in the
	// home directory when /run/user is missing, and a socket path must be
	// shorter than 108 bytes.
	home, err := os.MkdirTemp("", "kh-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, home: home, dir: t.TempDir()}
	t.Cleanup(func() {
		if _, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command("gpgconf", "--kill", "all")
			cmd.Env = g.env()
			_ = cmd.Run()
		}
		os.RemoveAll(home)
	})
	return g
}

func (g *gnupg) env() []string {
	return append(os.Environ(), "GNUPGHOME="+g.home, "LC_ALL=C", "LANGUAGE=")
}

// run runs gpg --batch --no-tty --pinentry-mode loopback with args, and
// returns its standard output and standard error. err is non-nil when gpg
// exits with a non-zero status (an *exec.ExitError) or cannot run.
func (g *gnupg) run(args ...string) (stdout, stderr []byte, err error) {
	return g.runInput(nil, args...)
}

// runInput is run with stdin as gpg's standard input.
func (g *gnupg) runInput(stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--homedir", g.home, "--batch", "--no-tty", "--pinentry-mode", "loopback"}, args...)
	cmd := exec.CommandContext(ctx, "gpg", full...)
	cmd.Env = g.env()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("gpg %s: timed out: %w", strings.Join(args, " "), ctx.Err())
	}
	return out.Bytes(), errOut.Bytes(), err
}

// mustRun is run, failing the test (with gpg's messages) if gpg fails.
func (g *gnupg) mustRun(args ...string) []byte {
	g.t.Helper()
	out, errOut, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// file writes data to a scratch file and returns its path.
func (g *gnupg) file(name string, data []byte) string {
	g.t.Helper()
	path := filepath.Join(g.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		g.t.Fatal(err)
	}
	return path
}

// version returns gpg's version, such as "2.2.40".
func (g *gnupg) version() string {
	g.t.Helper()
	out := g.mustRun("--version")
	if m := regexp.MustCompile(`gpg \(GnuPG[^)]*\) (\d+\.\d+\.\d+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "unknown"
}

// fingerprints returns the primary key fingerprints gpg lists for query
// (all keys if empty), from --with-colons output.
func (g *gnupg) fingerprints(secret bool, query ...string) []string {
	g.t.Helper()
	cmd := "--list-keys"
	if secret {
		cmd = "--list-secret-keys"
	}
	out := g.mustRun(append([]string{"--with-colons", cmd}, query...)...)
	var fprs []string
	primary := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		switch f[0] {
		case "pub", "sec":
			primary = true
		case "sub", "ssb":
			primary = false
		case "fpr":
			if primary && len(f) > 9 {
				fprs = append(fprs, f[9])
				primary = false
			}
		}
	}
	return fprs
}

// keyPacketBytes concatenates raw key packets.
func keyPacketBytes(kps []*KeyPacket) []byte {
	var b bytes.Buffer
	for _, kp := range kps {
		b.Write(kp.Raw)
	}
	return b.Bytes()
}

// statusLine returns the first "[GNUPG:] <keyword> ..." line of gpg's
// status output, or "".
func statusLine(status, keyword string) string {
	prefix := "[GNUPG:] " + keyword + " "
	_, rest, ok := strings.Cut("\n"+status, "\n"+prefix)
	if !ok {
		return ""
	}
	line, _, _ := strings.Cut(rest, "\n")
	return prefix + line
}
