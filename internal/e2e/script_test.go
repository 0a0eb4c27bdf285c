// Package e2e runs the testscript suite in testdata/script: keyholderd,
// device-sim and keyholder as real processes, talking HTTP. The three
// commands are this test binary itself (testscript.Main), so nothing is
// built first.
package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyholder/keyholder/cmd/device-sim/sim"
	"github.com/keyholder/keyholder/cmd/keyholder/cli"
	"github.com/keyholder/keyholder/cmd/keyholderd/daemon"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"keyholderd": func() { os.Exit(daemon.Main()) },
		"keyholder":  func() { os.Exit(cli.Main()) },
		"device-sim": func() { os.Exit(sim.Main()) },
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func TestScripts(t *testing.T) {
	testscript.Run(t, scriptParams(t, filepath.Join("..", "..", "testdata", "script")))
}

// scriptParams runs the scripts in dir against a fresh server each: its
// environment and the commands of this file.
func scriptParams(t *testing.T, dir string) testscript.Params {
	return testscript.Params{
		Dir: dir,
		Setup: func(env *testscript.Env) error {
			port, err := freePort()
			if err != nil {
				return err
			}
			tok := make([]byte, 16)
			rand.Read(tok)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			env.Setenv("ADDR", addr)
			env.Setenv("SERVER", "http://"+addr)
			env.Setenv("KEYHOLDER_SERVER", "http://"+addr)
			env.Setenv("KEYHOLDER_ADMIN_TOKEN", hex.EncodeToString(tok))
			env.Setenv("KEYHOLDER_HOME", filepath.Join(env.WorkDir, "party"))
			env.Setenv("KEYHOLDER_DEVICE_HOME", filepath.Join(env.WorkDir, "device"))
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitserver":  cmdWaitServer,
			"capture":     cmdCapture,
			"capturefile": cmdCaptureFile,
			"mkfile":      cmdMkfile,
			"sleep":       cmdSleep,
			"waitfile":    cmdWaitFile,
			"operator":    cmdOperator,
			"jsonget":     cmdJSONGet,
			"cirequire":   cmdCIRequire,
			"devicekey":   cmdDeviceKey,
			"exits":       cmdExits,
		},
	}
}

// waitserver [timeout]: wait until $SERVER/healthz answers 200.
func cmdWaitServer(ts *testscript.TestScript, neg bool, args []string) {
	timeout := 60 * time.Second
	if len(args) > 0 {
		d, err := time.ParseDuration(args[0])
		ts.Check(err)
		timeout = d
	}
	url := ts.Getenv("SERVER") + "/healthz"
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if neg {
					ts.Fatalf("server is up")
				}
				return
			}
		}
		if time.Now().After(deadline) {
			if neg {
				return
			}
			ts.Fatalf("server at %s not up after %s (last error %v)", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exits CODE PROG [ARGS...]: run PROG like exec, and fail unless it exits
// with CODE (! exec only checks that the code is not 0). Its stdout and
// stderr are there for the next stdout and stderr commands.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// capture VAR [REGEXP]: set VAR to the last command's stdout (trimmed), or
// to the first submatch of REGEXP in it.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: capture VAR [REGEXP]")
	}
	out := ts.ReadFile("stdout")
	val := strings.TrimSpace(out)
	if len(args) == 2 {
		m := regexp.MustCompile(args[1]).FindStringSubmatch(out)
		if m == nil {
			ts.Fatalf("capture: %q does not match stdout", args[1])
		}
		val = m[len(m)-1]
	}
	ts.Setenv(args[0], val)
}

// capturefile VAR FILE REGEXP: set VAR to the first submatch of REGEXP in
// FILE (a background command's log).
func cmdCaptureFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: capturefile VAR FILE REGEXP")
	}
	m := regexp.MustCompile(args[2]).FindStringSubmatch(ts.ReadFile(args[1]))
	if m == nil {
		ts.Fatalf("capturefile: %q does not match %s", args[2], args[1])
	}
	ts.Setenv(args[0], m[len(m)-1])
}

// mkfile NAME SIZE: a file of SIZE random bytes (SIZE may end in K or M).
func cmdMkfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkfile NAME SIZE")
	}
	s, mult := args[1], 1
	switch {
	case strings.HasSuffix(s, "K"):
		s, mult = s[:len(s)-1], 1<<10
	case strings.HasSuffix(s, "M"):
		s, mult = s[:len(s)-1], 1<<20
	}
	n, err := strconv.Atoi(s)
	ts.Check(err)
	b := make([]byte, n*mult)
	rand.Read(b)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}

// sleep DURATION
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

// waitfile FILE REGEXP [timeout]: wait until FILE's content matches.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: waitfile FILE REGEXP [timeout]")
	}
	timeout := 60 * time.Second
	if len(args) == 3 {
		d, err := time.ParseDuration(args[2])
		ts.Check(err)
		timeout = d
	}
	re := regexp.MustCompile(args[1])
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if re.Match(b) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s does not match %q after %s; it holds:\n%s", args[0], args[1], timeout, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
