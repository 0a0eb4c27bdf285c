package clihome

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
)

// Exit codes of keyholder, device-sim and keyholderd. Each root command's
// help (its Long text) says which of them it uses and when.
const (
	ExitOK    = 0
	ExitError = 1 // any error not below
	// ExitUsage: an unknown command or flag, a missing or malformed
	// argument.
	ExitUsage = 2
	// ExitRefused: the user's device said no: it rejected the record,
	// or refused the access request or the device link.
	ExitRefused = 3
	// ExitTimedOut: the wait ran out (--timeout), or the record or request
	// expired without an answer.
	ExitTimedOut = 4
	// ExitUnreachable: no answer from the server: the connection was
	// refused, the host not found, or the network failed.
	ExitUnreachable = 5
)

// exitError gives err the exit code code; its message is err's.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Refused marks err (a device's rejection or refusal) for ExitRefused.
func Refused(err error) error { return &exitError{ExitRefused, err} }

// TimedOut marks err (a wait that ran out) for ExitTimedOut.
func TimedOut(err error) error { return &exitError{ExitTimedOut, err} }

// Usage marks err (a wrong command line) for ExitUsage.
func Usage(err error) error { return &exitError{ExitUsage, err} }

// Usagef is Usage of a formatted error.
func Usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// ExitCode is the exit code for err: the one Refused, TimedOut or Usage
// gave it, else ExitTimedOut for a deadline, ExitRefused for the server's
// access-refused answer, ExitUnreachable for a network error without an
// HTTP answer, and ExitError for the rest.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ExitTimedOut
	}
	var p *api.Problem
	if errors.As(err, &p) && p.Type == api.ProblemAccessRefused {
		return ExitRefused
	}
	if unreachable(err) {
		return ExitUnreachable
	}
	return ExitError
}

// unreachable reports whether err is a failure to talk to a server at all:
// a dial, read or write error on a network connection, a name not found,
// or a connection closed before an answer. Local errors (a file, a
// closed stdout) and answers (an HTTP status) are not.
func unreachable(err error) bool {
	if client.StatusOf(err) != 0 {
		return false
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) {
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue) && (errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF))
}

// Version is this program's version for --version: the main module's
// version, the VCS commit it was built from (if the build recorded it)
// and the Go version.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if rev != "" {
		c := "commit " + rev
		if at != "" {
			c += " of " + at
		}
		if modified {
			c += ", with uncommitted changes"
		}
		parts = append(parts, c)
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	if len(parts) == 0 {
		return v
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}

// Conventions gives root what the three programs share: --version, and
// flag and argument errors that exit with ExitUsage. Each root's Long
// text ends with the table of the exit codes it uses.
func Conventions(root *cobra.Command) {
	root.Version = Version()
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	markArgs(root)
}

// markArgs makes the argument checks of cmd and its subcommands usage
// errors.
func markArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return Usage(err)
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markArgs(sub)
	}
}

// Run runs root with args and ctx, prints an error on one line after
// "name:" and returns the exit code (see ExitCode; an unknown command is
// ExitUsage).
func Run(ctx context.Context, name string, root *cobra.Command, args []string) int {
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(os.Stderr, name+":", OneLine(err))
	if _, _, ferr := root.Find(args); ferr != nil {
		return ExitUsage
	}
	return ExitCode(err)
}

// PrintJSON writes v to stdout as one indented JSON document (--json).
func PrintJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// NonNil is s, or an empty slice for nil (a JSON [] rather than null).
func NonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// MinPassphrase is the fewest characters a new key passphrase may have.
const MinPassphrase = 8

// CheckPassphrase refuses a passphrase shorter than MinPassphrase
// characters; what names it in the message ("the passphrase", "the
// passphrase in FILE").
func CheckPassphrase(pass []byte, what string) error {
	if n := utf8.RuneCount(pass); n < MinPassphrase {
		return fmt.Errorf("%s has %d characters: a key passphrase needs at least %d (it is all that protects the private key on this disk)", what, n, MinPassphrase)
	}
	return nil
}

// Stdio is the file name that means stdin or stdout.
const Stdio = "-"

// ReadFile reads the file name, or stdin when name is "-".
func ReadFile(name string) ([]byte, error) {
	if name == Stdio {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// OpenInput opens the file name for reading, or stdin when name is "-",
// and returns its size when it is a regular file (else 0: unknown).
func OpenInput(name string) (io.ReadCloser, int64, error) {
	f := os.Stdin
	if name != Stdio {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, 0, err
		}
	}
	var size int64
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	if name == Stdio {
		return io.NopCloser(f), size, nil
	}
	return f, size, nil
}
