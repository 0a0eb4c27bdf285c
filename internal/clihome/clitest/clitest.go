// Package clitest runs the commands of keyholder, device-sim and
// keyholderd in the test's process, as their main functions do, with the
// standard streams captured.
package clitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/keyholder/keyholder/internal/clihome"
)

// stdio serializes the swaps of os.Stdin, os.Stdout and os.Stderr.
var stdio sync.Mutex

// Capture runs fn with stdin on os.Stdin (through a pipe, as from another
// program) and returns what it wrote to os.Stdout and os.Stderr. Calls are
// serialized: the streams are the process's.
func Capture(stdin string, fn func()) (stdout, stderr string) {
	stdio.Lock()
	defer stdio.Unlock()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	oldIn, oldOut, oldErr := os.Stdin, os.Stdout, os.Stderr
	os.Stdin, os.Stdout, os.Stderr = inR, outW, errW
	var out, errOut bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { io.Copy(inW, strings.NewReader(stdin)); inW.Close(); wg.Done() }()
	go func() { io.Copy(&out, outR); wg.Done() }()
	go func() { io.Copy(&errOut, errR); wg.Done() }()
	defer func() {
		os.Stdin, os.Stdout, os.Stderr = oldIn, oldOut, oldErr
		outW.Close()
		errW.Close()
		inR.Close() // ends the stdin copy if fn did not read it all
		wg.Wait()
		stdout, stderr = out.String(), errOut.String()
	}()
	fn()
	return "", ""
}

// Result is what a run printed and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs root with args as the program name would (clihome.Run: the
// error on stderr, the exit code), with stdin on its standard input.
func Run(name string, root *cobra.Command, stdin string, args ...string) Result {
	var r Result
	r.Stdout, r.Stderr = Capture(stdin, func() {
		r.Code = clihome.Run(context.Background(), name, root, args)
	})
	return r
}

// DecodeOne decodes out, which must be exactly one JSON document with no
// field v lacks (what --json prints), into v.
func DecodeOne(t testing.TB, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("not a JSON document of %T: %v\n%s", v, err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", out)
	}
}

// ClosedURL is the URL of a port on 127.0.0.1 that nothing listens on.
func ClosedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}
