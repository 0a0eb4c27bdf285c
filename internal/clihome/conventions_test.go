package clihome

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
)

func TestExitCode(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	for _, c := range []struct {
		name string
		err  error
		code int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("x"), ExitError},
		{"usage", fmt.Errorf("seal: %w", Usagef("--to USER is required")), ExitUsage},
		{"refused", Refused(errors.New("the user refused")), ExitRefused},
		{"timed out", TimedOut(errors.New("still pending")), ExitTimedOut},
		{"deadline", fmt.Errorf("waiting: %w", context.DeadlineExceeded), ExitTimedOut},
		{"deadline in a request", &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, ExitTimedOut},
		{"canceled", context.Canceled, ExitError},
		{"access refused (client)", fmt.Errorf("open: %w", &client.Error{Status: 403, Type: api.ProblemAccessRefused}), ExitRefused},
		{"access refused (problem)", &api.Problem{Status: 403, Type: api.ProblemAccessRefused}, ExitRefused},
		{"forbidden", &client.Error{Status: 403, Type: api.ProblemForbidden}, ExitError},
		{"unavailable", &client.Error{Status: 503, Type: api.ProblemUnavailable}, ExitError},
		{"connection refused", &url.Error{Op: "Get", URL: "http://x", Err: dial}, ExitUnreachable},
		{"name not found", &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}}, ExitUnreachable},
		{"connection closed", &url.Error{Op: "Post", URL: "http://x", Err: io.EOF}, ExitUnreachable},
		{"explained", client.ExplainUnreachable(&url.Error{Op: "Get", URL: "http://x", Err: dial}, "http://x"), ExitUnreachable},
		{"local file", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, ExitError},
		{"closed stdout", &fs.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}, ExitError},
		{"truncated key file", fmt.Errorf("parsing: %w", io.ErrUnexpectedEOF), ExitError},
		{"unsupported scheme", &url.Error{Op: "Get", URL: "ftp://x", Err: errors.New(`unsupported protocol scheme "ftp"`)}, ExitError},
	} {
		if got := ExitCode(c.err); got != c.code {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", c.name, c.err, got, c.code)
		}
	}
	// The marks keep the message.
	if err := Refused(errors.New("record x was rejected")); err.Error() != "record x was rejected" {
		t.Errorf("Refused changed the message: %q", err)
	}
}

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/keyholder/keyholder", Version: "v1.2.3"}}
	if got, want := versionOf(bi), "v1.2.3 (go1.26.8)"; got != want {
		t.Errorf("release: %q, want %q", got, want)
	}
	bi.Main.Version = "v0.0.0-20261127140812-4c0f5f5ed0b7+dirty"
	bi.Settings = []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "4c0f5f5ed0b78bc71f0b07fac6577e40ed002d23"},
		{Key: "vcs.time", Value: "2026-11-27T14:08:12Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	want := "v0.0.0-20261127140812-4c0f5f5ed0b7+dirty (commit 4c0f5f5ed0b78bc71f0b07fac6577e40ed002d23 of 2026-11-27T14:08:12Z, with uncommitted changes, go1.26.8)"
	if got := versionOf(bi); got != want {
		t.Errorf("vcs build:\n%q\nwant\n%q", got, want)
	}
	if got := versionOf(&debug.BuildInfo{}); got != "(devel)" {
		t.Errorf("no information: %q", got)
	}
	// The test binary's own: its module version and Go version at least.
	own, _ := debug.ReadBuildInfo()
	if v := Version(); own == nil || v == "" || !strings.Contains(v, own.GoVersion) {
		t.Errorf("Version() = %q", v)
	}
}
