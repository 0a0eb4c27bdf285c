package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// Test plumbing for scripts that play a party with standard tools only
// (gpg-party.txtar): the JSON a party would read with jq, and the tools it
// needs. Neither command does any of the party's checks.

// jsonget FILE PATH [OUT]: write the value at PATH in the JSON document
// FILE to OUT, or to stdout, as `jq -j` does: a string as its raw bytes
// (no quotes, escapes decoded, no newline added), anything else as JSON.
// PATH is dot-separated object keys and array indices, e.g.
// chain.0.statement. A missing value is an error (so `! jsonget` checks
// that a field is absent).
func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: jsonget FILE PATH [OUT]")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(ts.ReadFile(args[0]))))
	dec.UseNumber()
	var v any
	ts.Check(dec.Decode(&v))
	found := true
	for _, k := range strings.Split(args[1], ".") {
		switch x := v.(type) {
		case map[string]any:
			v, found = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			found = err == nil && i >= 0 && i < len(x)
			if found {
				v = x[i]
			}
		default:
			found = false
		}
		if !found {
			break
		}
	}
	if neg {
		if found {
			ts.Fatalf("%s has a value at %s", args[0], args[1])
		}
		return
	}
	if !found {
		ts.Fatalf("%s has no value at %s", args[0], args[1])
	}
	var out []byte
	if s, ok := v.(string); ok {
		out = []byte(s)
	} else {
		b, err := json.Marshal(v)
		ts.Check(err)
		out = b
	}
	if len(args) == 3 {
		ts.Check(os.WriteFile(ts.MkAbs(args[2]), out, 0o644))
		return
	}
	_, err := ts.Stdout().Write(out)
	ts.Check(err)
}

// cirequire PROGRAM...: under CI (CI=true) fail when a program is not on
// PATH, as the GnuPG interop tests do: there they must run (.ci/run
// installs the programs). Elsewhere it does nothing; the script skips
// itself with [!exec:PROGRAM] skip.
func cmdCIRequire(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: cirequire PROGRAM...")
	}
	if os.Getenv("CI") != "true" {
		return
	}
	for _, p := range args {
		if _, err := exec.LookPath(p); err != nil {
			ts.Fatalf("%s is not installed, and CI=true requires this script to run: %v", p, err)
		}
	}
}
