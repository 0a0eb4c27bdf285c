package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/internal/clihome/clitest"
	"github.com/keyholder/keyholder/internal/server/servertest"
)

// With a log key configured, seal, wait, request and open check the log
// (and say nothing about it); without one, each warns once on stderr.
func TestLogSettings(t *testing.T) {
	e := newCLIEnv(t)
	f := e.file("r.txt", "results")
	_, errOut, err := e.run("seal", f, "--to", e.user)
	if err != nil || strings.Count(errOut, "the transparency log is not checked") != 1 {
		t.Fatalf("seal without a log key: %v\n%s", err, errOut)
	}
	if r := e.exec("", "log", "--key", "not a key"); r.Code != clihome.ExitUsage {
		t.Fatalf("a malformed log key: exit %d\n%s", r.Code, r.Stderr)
	}
	e.must("log", "--key", e.srv.LogVKey)
	if out := e.must("log"); !strings.Contains(out, e.srv.LogVKey) {
		t.Fatalf("log shows %q", out)
	}
	rec, errOut, err := e.run("seal", f, "--to", e.user)
	if err != nil || strings.Contains(errOut, "not checked") {
		t.Fatalf("seal with a log key: %v\n%s", err, errOut)
	}
	rec = strings.TrimSpace(rec)
	e.answer(false)
	e.must("wait", rec, "--timeout", "30s")
	e.must("request", rec, "--purpose", "read")
	e.answer(false)
	out := filepath.Join(t.TempDir(), "out.txt")
	e.must("open", rec, "-o", out)
	if b, _ := os.ReadFile(out); string(b) != "results" {
		t.Fatalf("opened %q", b)
	}
	if _, err := os.Stat(filepath.Join(e.home, clihome.LogCheckpointFile)); err != nil {
		t.Fatalf("no trusted checkpoint kept: %v", err)
	}
}

// keyholder monitor reports the watched users' chain links, and exits 3
// on a key it was not told to expect.
func TestMonitor(t *testing.T) {
	e := newCLIEnv(t)
	if r := e.exec("", "monitor", "--once"); r.Code != clihome.ExitError || !strings.Contains(r.Stderr, "no log key configured") {
		t.Fatalf("monitor without a log key: exit %d\n%s", r.Code, r.Stderr)
	}
	e.must("log", "--key", e.srv.LogVKey)
	dev := e.dev.Identity().Fingerprint()
	waitFor(t, func() bool {
		r := e.exec("", "monitor", "--once", "--json", "--watch", e.user, "--known-key", dev)
		if r.Code != 0 {
			t.Fatalf("monitor: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		var p monitorPass
		clitest.DecodeOne(t, r.Stdout, &p)
		if len(p.Events) == 0 {
			return false // the link is not sequenced yet
		}
		if len(p.Events) != 1 || p.Events[0].Key != dev || p.Events[0].User != e.user || p.Events[0].Unknown {
			t.Fatalf("monitor reported %+v", p)
		}
		return true
	})
	// A fresh monitor (another home's checkpoint) that does not know the
	// device key: exit 3, the event marked unknown.
	t.Setenv("KEYHOLDER_HOME", filepath.Join(t.TempDir(), "auditor"))
	e.home = os.Getenv("KEYHOLDER_HOME")
	e.must("log", "--key", e.srv.LogVKey)
	r := e.exec("", "monitor", "--once", "--watch", e.user, "--known-key", "0000000000000000000000000000000000000000")
	if r.Code != clihome.ExitRefused || !strings.Contains(r.Stdout, "UNKNOWN KEY") || !strings.Contains(r.Stderr, "unknown key") {
		t.Fatalf("an unknown key: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// A server that shows the monitor another tree of the size it trusted (a
// fork): exit 3, "log inconsistency".
func TestMonitorFork(t *testing.T) {
	e := newCLIEnv(t)
	e.must("log", "--key", e.srv.LogVKey)
	var trusted tlog.Tree
	waitFor(t, func() bool {
		r := e.exec("", "monitor", "--once", "--json")
		var p monitorPass
		clitest.DecodeOne(t, r.Stdout, &p)
		if r.Code != 0 {
			t.Fatalf("monitor: exit %d\n%s", r.Code, r.Stderr)
		}
		h, _ := tlog.ParseHash(p.NewHash)
		trusted = tlog.Tree{N: p.NewSize, Hash: h}
		return p.NewSize > 0
	})
	forged := trusted
	forged.Hash[0] ^= 1
	signed, err := note.Sign(&note.Note{Text: torchwood.Checkpoint{Origin: servertest.LogOrigin, Tree: forged}.String()}, e.srv.LogSigner)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/log/checkpoint" {
			w.Write(signed)
			return
		}
		http.Error(w, "not here", http.StatusNotFound)
	}))
	defer proxy.Close()
	t.Setenv("KEYHOLDER_SERVER", proxy.URL)
	r := e.exec("", "monitor", "--once")
	if r.Code != clihome.ExitRefused || !strings.Contains(r.Stderr, "log inconsistency") || !strings.Contains(r.Stderr, "log fork") {
		t.Fatalf("a fork: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
