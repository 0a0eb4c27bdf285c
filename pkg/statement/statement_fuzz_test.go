package statement

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseStatement checks the canonical-form property on arbitrary input:
// whatever the parser accepts, Marshal writes back byte for byte, and
// parsing that again gives the same value; whatever it refuses, it refuses
// with ErrStatement, and the kind-specific parsers agree with
// ParseStatement. Log leaves share the form: what their parsers accept,
// Marshal writes back. The seed corpus (testdata/fuzz/FuzzParseStatement,
// made by TestGenerateStatementCorpus) holds valid statements of every
// kind, log leaves, retired v1 statements and near misses; `go test` runs
// it.
func FuzzParseStatement(f *testing.F) {
	for _, ex := range stmtExamples() {
		f.Add(stmtMarshal(f, ex.s))
	}
	f.Add(stmtMarshal(f, stmtChallenge()))
	f.Add(stmtMarshal(f, stmtRevocation()))
	f.Add(stmtMarshal(f, stmtChainReset()))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		for _, parse := range stmtLeafParsers {
			leaf, err := parse(b)
			if err != nil {
				if !errors.Is(err, ErrStatement) {
					t.Fatalf("leaf error does not wrap ErrStatement: %v", err)
				}
				continue
			}
			if out, err := leaf.Marshal(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("Marshal(Parse(leaf)) = %q, %v; want %q", out, err, b)
			}
		}
		x, err := ParseStatement(b)
		if !bytes.Equal(in, b) {
			t.Fatal("ParseStatement modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrStatement) {
				t.Fatalf("error does not wrap ErrStatement: %v", err)
			}
			if x != nil {
				t.Fatalf("ParseStatement returned %T with error %v", x, err)
			}
			for typ, parse := range stmtParsers {
				if _, err := parse(b); err == nil {
					t.Fatalf("parser for %v accepted what ParseStatement refused", typ)
				}
			}
			return
		}
		if len(b) > MaxStatementSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		for typ, parse := range stmtParsers {
			y, err := parse(b)
			if typ == reflect.TypeOf(x) {
				if err != nil || !reflect.DeepEqual(x, y) {
					t.Fatalf("parser for %v disagrees with ParseStatement: %v", typ, err)
				}
			} else if err == nil {
				t.Fatalf("parser for %v accepted a %T", typ, x)
			}
		}
		m, ok := x.(stmtMarshaler)
		if !ok {
			t.Fatalf("ParseStatement returned %T", x)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted statement failed: %v\n%q", err, b)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("Marshal(Parse(b)) != b:\n%q\n%q", out, b)
		}
		x2, err := ParseStatement(out)
		if err != nil || !reflect.DeepEqual(x, x2) {
			t.Fatalf("Parse(Marshal(x)) != x: %v", err)
		}
	})
}

// stmtLeafParsers are the parsers of log leaves.
var stmtLeafParsers = []func([]byte) (stmtMarshaler, error){
	func(b []byte) (stmtMarshaler, error) { return ParseRevocation(b) },
	func(b []byte) (stmtMarshaler, error) { return ParseChainReset(b) },
}

var updateStatementCorpus = flag.Bool("update-statement-corpus", false, "regenerate testdata/fuzz/FuzzParseStatement seeds")

// TestGenerateStatementCorpus writes the FuzzParseStatement seed corpus
// when run with -update-statement-corpus (go test -run
// TestGenerateStatementCorpus -update-statement-corpus ./pkg/statement/):
// valid statements (valid-*), which the fuzz target round-trips, log
// leaves (leaf-*), which only their own parsers accept, and near misses
// (miss-*), which every parser refuses. It checks which is which.
func TestGenerateStatementCorpus(t *testing.T) {
	if !*updateStatementCorpus {
		t.Skip("run with -update-statement-corpus to regenerate the FuzzParseStatement seeds")
	}
	write := func(name, b string) {
		t.Helper()
		_, err := ParseStatement([]byte(b))
		if valid := strings.HasPrefix(name, "valid-"); valid != (err == nil) {
			t.Fatalf("seed %s: ParseStatement: %v", name, err)
		}
		stmtWriteSeed(t, name, []byte(b))
	}
	read := func(name string) string { return string(stmtTestdata(t, name)) }
	rep := func(s, old, new string) string { return stmtRep(t, s, old, new) }
	marshal := func(s stmtMarshaler) string { return string(stmtMarshal(t, s)) }
	appr, sub, rej := marshal(stmtApproval()), marshal(stmtSubmission()), marshal(stmtRejection())
	grant, link := marshal(stmtGrant()), marshal(stmtChainLinkNext())

	for _, ex := range stmtExamples() {
		write("valid-"+strings.TrimSuffix(ex.file, ".txt"), marshal(ex.s))
	}
	write("valid-challenge", marshal(stmtChallenge()))
	write("leaf-revocation", marshal(stmtRevocation()))
	write("leaf-chain-reset", marshal(stmtChainReset()))
	write("valid-gnupg-submission", read("gnupg-submission.txt"))
	short := stmtApproval()
	short.Record, short.Request, short.Ciphertext.Size = "a", "_-", 0
	write("valid-approval-size-zero-short-ids", marshal(short))
	big := stmtSubmission()
	big.Submitter, big.Ciphertext.Size = strings.Repeat("0123456789ABCDEF", 4), math.MaxInt64
	write("valid-submission-v6-fingerprint-max-size", marshal(big))
	long := stmtRejection()
	long.Reason = strings.Repeat("z-9", 21) + "a"
	write("valid-rejection-reason-64", marshal(long))
	last := stmtChainLinkNext()
	last.Seq, last.Action = math.MaxInt64, ActionRemoveRecovery
	write("valid-chain-link-remove-recovery-max-seq", marshal(last))

	// Retired versions, exactly as v1 wrote them.
	for _, kind := range []string{"submission", "approval", "rejection"} {
		write("miss-retired-"+kind+"-v1", read(filepath.Join("retired", kind+"-v1.txt")))
	}
	// Near misses of valid statements.
	write("miss-empty", "")
	write("miss-version-only", "keyholder-approval-v2\n")
	write("miss-unknown-version", rep(appr, "keyholder-approval-v2", "keyholder-approval-v3"))
	write("miss-bom", "\ufeff"+sub)
	write("miss-crlf", strings.ReplaceAll(appr, "\n", "\r\n"))
	write("miss-no-final-newline", strings.TrimSuffix(appr, "\n"))
	write("miss-extra-empty-line", appr+"\n")
	write("miss-duplicate-field", appr+"time: 2026-11-27T03:04:05Z\n")
	write("miss-unknown-field", rep(sub, "user: ", "note: hello\nuser: "))
	write("miss-missing-field", rep(grant, "request: 5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d\n", ""))
	write("miss-reordered", rep(rep(appr, "record: "+stmtRecord+"\n", ""), "user: "+stmtUser+"\n", "user: "+stmtUser+"\nrecord: "+stmtRecord+"\n"))
	write("miss-double-space", rep(appr, "device: ", "device:  "))
	write("miss-trailing-space", rep(appr, "size: 1048576", "size: 1048576 "))
	write("miss-lower-fingerprint", rep(appr, stmtDevice, strings.ToLower(stmtDevice)))
	write("miss-upper-digest", rep(appr, stmtCiphertext.Hex(), strings.ToUpper(stmtCiphertext.Hex())))
	write("miss-zero-digest", rep(sub, stmtHexString(stmtMetadata), strings.Repeat("0", 64)))
	write("miss-size-leading-zero", rep(appr, "size: 1048576", "size: 01048576"))
	write("miss-size-sign", rep(sub, "size: 1048576", "size: +1048576"))
	write("miss-size-overflow", rep(sub, "size: 1048576", "size: 9223372036854775808"))
	write("miss-id-65", rep(appr, "record: "+stmtRecord, "record: "+strings.Repeat("a", 65)))
	write("miss-time-offset", rep(appr, "03:04:05Z", "04:04:05+01:00"))
	write("miss-time-fraction", rep(rej, "03:04:59Z", "03:04:59.5Z"))
	write("miss-invalid-utf8", rep(appr, "user: ", "user: \xc3("))
	write("miss-nul", rep(sub, "user: ", "user: \x00"))
	write("miss-grant-expires-before-time", rep(grant, "expires: 2026-12-27", "expires: 2026-10-27"))
	write("miss-rejection-version-on-grant", rep(grant, "keyholder-grant-v1", "keyholder-rejection-v2"))
	write("miss-approval-version-on-rejection", rep(rej, "keyholder-rejection-v2", "keyholder-approval-v2"))
	write("miss-rejection-version-on-approval", rep(appr, "keyholder-approval-v2", "keyholder-rejection-v2"))
	write("miss-approval-without-session-key-id", rep(appr, "session-key-id: "+stmtHexString(stmtSessionKeyID)+"\n", ""))
	write("miss-submission-without-key-packets", rep(sub, "key-packets-sha256: "+stmtHexString(stmtKeyPackets)+"\n", ""))
	write("miss-v1-fields-under-v2", rep(read(filepath.Join("retired", "approval-v1.txt")), "-v1\n", "-v2\n"))
	write("miss-rejection-reason-upper", rep(rej, "reason: declined", "reason: Declined"))
	write("miss-rejection-reason-space", rep(rej, "reason: declined", "reason: user declined"))
	write("miss-rejection-reason-65", rep(rej, "reason: declined", "reason: "+strings.Repeat("z", 65)))
	write("miss-chain-link-prev-none-seq-1", rep(link, "prev: "+stmtHexString(stmtChainLinkNext().Prev), "prev: none"))
	write("miss-chain-link-prev-digest-seq-0", rep(link, "seq: 1\n", "seq: 0\n"))
	write("miss-chain-link-prev-upper-none", rep(marshal(stmtChainLink()), "prev: none", "prev: NONE"))
	write("miss-chain-link-unknown-action", rep(link, "action: add-device", "action: add-key"))
}

// stmtWriteSeed writes b as the FuzzParseStatement seed name, in the
// format of go test's corpus files.
func stmtWriteSeed(t testing.TB, name string, b []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzParseStatement")
	seed := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%s)\n", strconv.QuoteToASCII(string(b)))
	if err := os.WriteFile(filepath.Join(dir, name), seed, 0o644); err != nil {
		t.Fatal(err)
	}
}
