package envelope

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseStatement checks the canonical-form property on arbitrary input:
// whatever the parser accepts, Marshal writes back byte for byte, and
// parsing that again gives the same value; whatever it refuses, it refuses
// with ErrStatement, and the kind-specific parsers agree with
// ParseStatement. The seed corpus (testdata/fuzz/FuzzParseStatement) holds
// valid statements of the four kinds and near misses; `go test` runs it.
func FuzzParseStatement(f *testing.F) {
	for _, s := range []stmtMarshaler{stmtSubmission(), stmtApproval(), stmtRejection(), stmtGrant(), &Challenge{Nonce: "q3vV0d9cJ0cXW8Ff2v7m1yHn6oB5cT4e0Jt0o9Qz1aE", Fingerprint: "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293"}} {
		b, err := s.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		x, err := ParseStatement(b)
		if !bytes.Equal(in, b) {
			t.Fatal("ParseStatement modified its input")
		}
		kinds := map[reflect.Type]func([]byte) (any, error){
			reflect.TypeFor[*Submission](): func(b []byte) (any, error) { return ParseSubmission(b) },
			reflect.TypeFor[*Approval]():   func(b []byte) (any, error) { return ParseApproval(b) },
			reflect.TypeFor[*Rejection]():  func(b []byte) (any, error) { return ParseRejection(b) },
			reflect.TypeFor[*Grant]():      func(b []byte) (any, error) { return ParseGrant(b) },
			reflect.TypeFor[*Challenge]():  func(b []byte) (any, error) { return ParseChallenge(b) },
		}
		if err != nil {
			if !errors.Is(err, ErrStatement) {
				t.Fatalf("error does not wrap ErrStatement: %v", err)
			}
			if x != nil {
				t.Fatalf("ParseStatement returned %T with error %v", x, err)
			}
			for typ, parse := range kinds {
				if _, err := parse(b); err == nil {
					t.Fatalf("parser for %v accepted what ParseStatement refused", typ)
				}
			}
			return
		}
		if len(b) > MaxStatementSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		for typ, parse := range kinds {
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
