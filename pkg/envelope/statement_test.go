package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var updateStatements = flag.Bool("update-statements", false, "rewrite testdata/statements golden files")

// Example values used across the statement tests and the golden files
// (docs/protocol.md shows the same statements).
var (
	stmtCiphertext = DataDigest{
		// SHA-256("keyholder example ciphertext")
		SHA256: stmtHex("b8525b6235c7ac351667c3fc8a4f74965079ee480d9e9b19a7374f6e01a66cf8"),
		Size:   1048576,
	}
	// MetadataDigest([]byte(`{"title":"Blood test, November 2026","content_type":"application/pdf"}`), nil)
	stmtMetadata = stmtHex("ab56863f0e128a2b9b5003f110385bd67816a696630e3f2c238dcbffe93a19ed")
	// SHA-256("keyholder example key packet")
	stmtKeyPacket = stmtHex("b99585521c31ab2fc2d1a3e246a5be9ff71822989b1f9e77ef5c489c3c296e3c")
	// PurposeDigest("Quarterly audit of account statements")
	stmtPurpose = stmtHex("c2482e646dac985b86d898cbd4ecc1e3050a0ab653c8102c4bc6e88dbbdd288d")
)

const (
	stmtRecord    = "3f2a9c0d1e6b4a7f8c5d2e1b0a9f8e7d"
	stmtUser      = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
	stmtDevice    = "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293"
	stmtSubmitter = "E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D1E2F3"
	stmtGrantee   = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"
)

func stmtHex(s string) [32]byte {
	var d [32]byte
	if n, err := hex.Decode(d[:], []byte(s)); err != nil || n != 32 {
		panic("bad test digest " + s)
	}
	return d
}

func stmtTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func stmtSubmission() *Submission {
	return &Submission{User: stmtUser, Submitter: stmtSubmitter, Ciphertext: stmtCiphertext, MetadataSHA256: stmtMetadata}
}

func stmtApproval() *Approval {
	return &Approval{
		Record: stmtRecord, User: stmtUser, Device: stmtDevice, Submitter: stmtSubmitter,
		Ciphertext: stmtCiphertext, MetadataSHA256: stmtMetadata,
		Request: "9e8d7c6b5a4f3e2d1c0b0a9f8e7d6c5b", Time: stmtTime("2026-11-27T03:04:05Z"),
	}
}

func stmtRejection() *Rejection {
	r := Rejection(*stmtApproval())
	r.Time = stmtTime("2026-11-27T03:04:59Z")
	return &r
}

func stmtGrant() *Grant {
	return &Grant{
		Record: stmtRecord, Grantee: stmtGrantee, KeyPacketSHA256: stmtKeyPacket, PurposeSHA256: stmtPurpose,
		Expires: stmtTime("2026-12-27T03:10:00Z"), Request: "5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
		Time: stmtTime("2026-11-27T03:10:00Z"),
	}
}

// stmtMarshaler is what all four statement types have in common.
type stmtMarshaler interface{ Marshal() ([]byte, error) }

func stmtMarshal(t testing.TB, s stmtMarshaler) []byte {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", s, err)
	}
	return b
}

// stmtParseAs parses b with the parser of the same kind as want.
func stmtParseAs(want any, b []byte) (any, error) {
	switch want.(type) {
	case *Submission:
		return ParseSubmission(b)
	case *Approval:
		return ParseApproval(b)
	case *Rejection:
		return ParseRejection(b)
	case *Grant:
		return ParseGrant(b)
	}
	panic("unknown statement type")
}

func TestStatementGolden(t *testing.T) {
	// The example digests are what the comments above say they are.
	if MetadataDigest([]byte(`{"title":"Blood test, November 2026","content_type":"application/pdf"}`), nil) != stmtMetadata {
		t.Error("example metadata digest is stale")
	}
	if PurposeDigest("Quarterly audit of account statements") != stmtPurpose {
		t.Error("example purpose digest is stale")
	}
	for _, tc := range []struct {
		file string
		s    stmtMarshaler
	}{
		{"submission.txt", stmtSubmission()},
		{"approval.txt", stmtApproval()},
		{"rejection.txt", stmtRejection()},
		{"grant.txt", stmtGrant()},
	} {
		path := filepath.Join("testdata", "statements", tc.file)
		got := stmtMarshal(t, tc.s)
		if *updateStatements {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Marshal gave\n%s\nwant\n%s", tc.file, got, want)
		}
		parsed, err := ParseStatement(want)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if !reflect.DeepEqual(parsed, tc.s) {
			t.Errorf("%s: parsed %+v, want %+v", tc.file, parsed, tc.s)
		}
	}
}

func TestStatementRoundTrip(t *testing.T) {
	long := strings.Repeat("aZ09_-", 10) + "abcd" // 64 characters
	fp64 := strings.Repeat("0123456789ABCDEF", 4)
	sub := stmtSubmission()
	sub.Submitter = fp64
	sub.Ciphertext.Size = math.MaxInt64
	sub.User = long
	appr := stmtApproval()
	appr.Ciphertext.Size = 0
	appr.Record, appr.Request = "a", "-"
	appr.Time = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	rej := stmtRejection()
	rej.Device = fp64
	rej.Time = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	gr := stmtGrant()
	gr.Grantee = fp64
	gr.Expires = gr.Time.Add(time.Second)
	// A time in another zone is written in UTC and read back as the same
	// instant.
	zoned := stmtApproval()
	zoned.Time = time.Date(2026, 11, 27, 4, 4, 5, 0, time.FixedZone("CET", 3600))

	for _, s := range []stmtMarshaler{
		stmtSubmission(), stmtApproval(), stmtRejection(), stmtGrant(),
		sub, appr, rej, gr, zoned,
	} {
		b := stmtMarshal(t, s)
		if !bytes.HasSuffix(b, []byte("\n")) || bytes.Contains(b, []byte("\r")) || len(b) > MaxStatementSize {
			t.Fatalf("Marshal gave a non-canonical text:\n%q", b)
		}
		got, err := stmtParseAs(s, b)
		if err != nil {
			t.Fatalf("parse %q: %v", b, err)
		}
		if !stmtEqual(got, s) {
			t.Errorf("round trip changed the statement:\n got %+v\nwant %+v", got, s)
		}
		generic, err := ParseStatement(b)
		if err != nil || reflect.TypeOf(generic) != reflect.TypeOf(s) || !stmtEqual(generic, s) {
			t.Errorf("ParseStatement gave %T %+v, %v", generic, generic, err)
		}
		if again := stmtMarshal(t, got.(stmtMarshaler)); !bytes.Equal(again, b) {
			t.Errorf("Marshal(Parse(b)) != b:\n%s\n%s", again, b)
		}
	}
	if b := stmtMarshal(t, zoned); !bytes.Contains(b, []byte("\ntime: 2026-11-27T03:04:05Z\n")) {
		t.Errorf("zoned time not written in UTC:\n%s", b)
	}
}

// stmtEqual compares statements, times by instant.
func stmtEqual(a, b any) bool {
	norm := func(v any) any {
		switch s := v.(type) {
		case *Approval:
			c := *s
			c.Time = c.Time.UTC()
			return c
		case *Rejection:
			c := *s
			c.Time = c.Time.UTC()
			return c
		case *Grant:
			c := *s
			c.Time, c.Expires = c.Time.UTC(), c.Expires.UTC()
			return c
		case *Submission:
			return *s
		}
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestStatementKindsDiffer(t *testing.T) {
	appr := stmtMarshal(t, stmtApproval())
	rej := stmtMarshal(t, (*Rejection)(stmtApproval()))
	if _, err := ParseApproval(rej); !errors.Is(err, ErrStatement) {
		t.Errorf("ParseApproval accepted a rejection: %v", err)
	}
	if _, err := ParseRejection(appr); !errors.Is(err, ErrStatement) {
		t.Errorf("ParseRejection accepted an approval: %v", err)
	}
	if _, err := ParseGrant(appr); !errors.Is(err, ErrStatement) {
		t.Errorf("ParseGrant accepted an approval: %v", err)
	}
	if _, err := ParseSubmission(appr); !errors.Is(err, ErrStatement) {
		t.Errorf("ParseSubmission accepted an approval: %v", err)
	}
	if s, err := ParseStatement(rej); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*Rejection); !ok {
		t.Errorf("ParseStatement gave %T for a rejection", s)
	}
}

func TestStatementMarshalErrors(t *testing.T) {
	type mod func()
	var (
		s = stmtSubmission()
		a = stmtApproval()
		r = stmtRejection()
		g = stmtGrant()
	)
	reset := func() { s, a, r, g = stmtSubmission(), stmtApproval(), stmtRejection(), stmtGrant() }
	for _, tc := range []struct {
		name  string
		field string // must appear in the error
		edit  mod
		what  func() stmtMarshaler
	}{
		{"empty user", "user", func() { s.User = "" }, func() stmtMarshaler { return s }},
		{"user too long", "user", func() { s.User = strings.Repeat("a", 65) }, func() stmtMarshaler { return s }},
		{"user with space", "user", func() { s.User = "a b" }, func() stmtMarshaler { return s }},
		{"user with newline", "user", func() { s.User = "a\nrecord: b" }, func() stmtMarshaler { return s }},
		{"user non-ASCII", "user", func() { s.User = "usér" }, func() stmtMarshaler { return s }},
		{"lower-case fingerprint", "submitter", func() { s.Submitter = strings.ToLower(stmtSubmitter) }, func() stmtMarshaler { return s }},
		{"short fingerprint", "submitter", func() { s.Submitter = stmtSubmitter[:39] }, func() stmtMarshaler { return s }},
		{"key id as fingerprint", "submitter", func() { s.Submitter = stmtSubmitter[:16] }, func() stmtMarshaler { return s }},
		{"negative size", "ciphertext-size", func() { s.Ciphertext.Size = -1 }, func() stmtMarshaler { return s }},
		{"zero ciphertext digest", "ciphertext-sha256", func() { s.Ciphertext.SHA256 = [32]byte{} }, func() stmtMarshaler { return s }},
		{"zero metadata digest", "metadata-sha256", func() { s.MetadataSHA256 = [32]byte{} }, func() stmtMarshaler { return s }},
		{"zero time", "time", func() { a.Time = time.Time{} }, func() stmtMarshaler { return a }},
		{"fractional time", "time", func() { a.Time = a.Time.Add(time.Millisecond) }, func() stmtMarshaler { return a }},
		{"monotonic now", "time", func() { a.Time = time.Now().Add(time.Nanosecond) }, func() stmtMarshaler { return a }},
		{"time before 1970", "time", func() { a.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }, func() stmtMarshaler { return a }},
		{"time after 9999", "time", func() { a.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, func() stmtMarshaler { return a }},
		{"empty record", "record", func() { a.Record = "" }, func() stmtMarshaler { return a }},
		{"bad device", "device", func() { a.Device = "" }, func() stmtMarshaler { return a }},
		{"bad request", "request", func() { a.Request = "req/1" }, func() stmtMarshaler { return a }},
		{"rejection bad submitter", "submitter", func() { r.Submitter = "X" }, func() stmtMarshaler { return r }},
		{"grant zero key packet", "key-packet-sha256", func() { g.KeyPacketSHA256 = [32]byte{} }, func() stmtMarshaler { return g }},
		{"grant zero purpose", "purpose-sha256", func() { g.PurposeSHA256 = [32]byte{} }, func() stmtMarshaler { return g }},
		{"grant zero expiry", "expires", func() { g.Expires = time.Time{} }, func() stmtMarshaler { return g }},
		{"grant expires at time", "expires", func() { g.Expires = g.Time }, func() stmtMarshaler { return g }},
		{"grant expires before time", "expires", func() { g.Expires = g.Time.Add(-time.Hour) }, func() stmtMarshaler { return g }},
		{"grant bad grantee", "grantee", func() { g.Grantee = "" }, func() stmtMarshaler { return g }},
		{"nil submission", "submission", func() { s = nil }, func() stmtMarshaler { return s }},
		{"nil approval", "approval", func() { a = nil }, func() stmtMarshaler { return a }},
		{"nil rejection", "rejection", func() { r = nil }, func() stmtMarshaler { return r }},
		{"nil grant", "grant", func() { g = nil }, func() stmtMarshaler { return g }},
	} {
		reset()
		tc.edit()
		b, err := tc.what().Marshal()
		if !errors.Is(err, ErrStatement) {
			t.Errorf("%s: Marshal gave %q, %v; want ErrStatement", tc.name, b, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name %q", tc.name, err, tc.field)
		}
	}
}

func TestStatementParseStrict(t *testing.T) {
	appr := string(stmtMarshal(t, stmtApproval()))
	sub := string(stmtMarshal(t, stmtSubmission()))
	grant := string(stmtMarshal(t, stmtGrant()))
	rep := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("test bug: %q not in statement", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	const fpLine = "device: " + stmtDevice + "\n"
	for _, tc := range []struct {
		name string
		in   string
		want string // substring of the error: names the line and field
	}{
		{"empty", "", "empty statement"},
		{"only newline", "\n", "line 1"},
		{"unknown version", rep(appr, "keyholder-approval-v1", "keyholder-approval-v2"), "line 1"},
		{"version with space", rep(appr, "keyholder-approval-v1", "keyholder-approval-v1 "), "line 1"},
		{"no version line", appr[len("keyholder-approval-v1\n"):], "line 1"},
		{"CRLF", strings.ReplaceAll(appr, "\n", "\r\n"), "line 1: carriage return"},
		{"CR in value", rep(appr, "user: 0c1d", "user: 0c1d\r"), "line 3: carriage return"},
		{"CR at end", appr + "\r", "carriage return"},
		{"missing final newline", strings.TrimSuffix(appr, "\n"), "line 10: missing final newline"},
		{"empty line in middle", rep(appr, fpLine, "\n"+fpLine), "line 4 (device): empty line"},
		{"empty line at end", appr + "\n", "line 11: empty line after the last field"},
		{"bytes after last line", appr + "x", "missing final newline"},
		{"extra line after last", appr + "note: hi\n", "line 11: unexpected line"},
		{"duplicate last field", appr + "time: 2026-11-27T03:04:05Z\n", "line 11: duplicate field \"time\""},
		{"unknown field", rep(appr, fpLine, "note: x\n"+fpLine), "line 4 (device): unknown field \"note\""},
		{"duplicate field", rep(appr, fpLine, "user: "+stmtUser+"\n"+fpLine), "line 4 (device): duplicate field \"user\""},
		{"missing field", rep(appr, fpLine, ""), "line 4 (device): field \"submitter\" out of order"},
		{"missing last field", appr[:strings.Index(appr, "time: ")], "line 10 (time): missing field"},
		{"reordered fields", rep(rep(appr, "record: "+stmtRecord+"\n", ""), "user: "+stmtUser+"\n", "user: "+stmtUser+"\nrecord: "+stmtRecord+"\n"), "line 2 (record): field \"user\" out of order"},
		{"upper-case name", rep(appr, "device:", "Device:"), "line 4 (device): unknown field \"Device\""},
		{"space before colon", rep(appr, "device:", "device :"), "line 4 (device): unknown field"},
		{"no space after colon", rep(appr, "device: ", "device:"), "line 4 (device): want"},
		{"tab after colon", rep(appr, "device: ", "device:\t"), "line 4 (device)"},
		{"double space", rep(appr, "device: ", "device:  "), "line 4 (device): fingerprint"},
		{"trailing space", rep(appr, stmtDevice, stmtDevice+" "), "line 4 (device): fingerprint"},
		{"trailing space on version", rep(appr, "v1\n", "v1 \n"), "line 1"},
		{"leading space", rep(appr, fpLine, " "+fpLine), "line 4 (device)"},
		{"lower-case fingerprint", rep(appr, stmtDevice, strings.ToLower(stmtDevice)), "line 4 (device): fingerprint must be upper-case hex"},
		{"short fingerprint", rep(appr, stmtDevice, stmtDevice[:38]), "line 4 (device): fingerprint must be 40 or 64"},
		{"upper-case digest", rep(appr, stmtCiphertext.Hex(), strings.ToUpper(stmtCiphertext.Hex())), "line 6 (ciphertext-sha256): SHA-256 must be lower-case hex"},
		{"short digest", rep(appr, stmtCiphertext.Hex(), stmtCiphertext.Hex()[2:]), "line 6 (ciphertext-sha256)"},
		{"zero digest", rep(appr, stmtCiphertext.Hex(), strings.Repeat("0", 64)), "line 6 (ciphertext-sha256): SHA-256 is all zero"},
		{"size leading zero", rep(appr, "size: 1048576", "size: 01048576"), "line 7 (ciphertext-size): size has a leading zero"},
		{"size double zero", rep(appr, "size: 1048576", "size: 00"), "line 7 (ciphertext-size)"},
		{"size plus sign", rep(appr, "size: 1048576", "size: +1048576"), "line 7 (ciphertext-size)"},
		{"size minus sign", rep(appr, "size: 1048576", "size: -1"), "line 7 (ciphertext-size)"},
		{"size hex", rep(appr, "size: 1048576", "size: 0x100000"), "line 7 (ciphertext-size)"},
		{"size exponent", rep(appr, "size: 1048576", "size: 1e6"), "line 7 (ciphertext-size)"},
		{"size separator", rep(appr, "size: 1048576", "size: 1_048_576"), "line 7 (ciphertext-size)"},
		{"size empty", rep(appr, "size: 1048576", "size: "), "line 7 (ciphertext-size)"},
		{"size overflow", rep(appr, "size: 1048576", "size: 9223372036854775808"), "line 7 (ciphertext-size): size \"9223372036854775808\" does not fit"},
		{"size too long", rep(appr, "size: 1048576", "size: 10000000000000000000"), "line 7 (ciphertext-size)"},
		{"id too long", rep(appr, "record: "+stmtRecord, "record: "+strings.Repeat("a", 65)), "line 2 (record): id must be 1 to 64"},
		{"id bad char", rep(appr, "record: "+stmtRecord, "record: a.b"), "line 2 (record): id"},
		{"id empty", rep(appr, "record: "+stmtRecord, "record: "), "line 2 (record)"},
		{"time offset", rep(appr, "03:04:05Z", "04:04:05+01:00"), "line 10 (time): time must be RFC 3339"},
		{"time lower z", rep(appr, "03:04:05Z", "03:04:05z"), "line 10 (time)"},
		{"time fraction", rep(appr, "03:04:05Z", "03:04:05.000Z"), "line 10 (time)"},
		{"time space", rep(appr, "2026-11-27T", "2026-11-27 "), "line 10 (time)"},
		{"time no zone", rep(appr, "03:04:05Z", "03:04:05"), "line 10 (time)"},
		{"time lower t", rep(appr, "2026-11-27T", "2026-11-27t"), "line 10 (time)"},
		{"time bad day", rep(appr, "2026-11-27T", "2026-02-30T"), "line 10 (time)"},
		{"time leap second", rep(appr, "03:04:05Z", "23:59:60Z"), "line 10 (time)"},
		{"time hour 24", rep(appr, "03:04:05Z", "24:00:00Z"), "line 10 (time)"},
		{"time before 1970", rep(appr, "2026-11-27T", "1969-11-27T"), "line 10 (time): time 1969-11-27T03:04:05Z is outside"},
		{"time short year", rep(appr, "2026-11-27T", "226-11-27T"), "line 10 (time)"},
		{"invalid UTF-8", rep(appr, "user: ", "user: \xff"), "line 3: invalid UTF-8"},
		{"non-ASCII id", rep(appr, "record: "+stmtRecord, "record: récord"), "line 2 (record)"},
		{"NUL byte", rep(appr, "record: ", "record: \x00"), "line 2 (record)"},
		{"BOM", "\ufeff" + appr, "line 1"},
		{"too large", appr + strings.Repeat("x", MaxStatementSize), "more than 4096"},
		{"submission missing metadata", sub[:strings.Index(sub, "metadata-sha256")], "line 6 (metadata-sha256): missing field"},
		{"submission with record field", rep(sub, "user: ", "record: "+stmtRecord+"\nuser: "), "line 2 (user): unknown field \"record\""},
		{"grant expires before time", rep(grant, "expires: 2026-12-27T03:10:00Z", "expires: 2026-11-27T03:09:59Z"), "line 6 (expires): 2026-11-27T03:09:59Z is not after time"},
		{"grant expires at time", rep(grant, "expires: 2026-12-27T03:10:00Z", "expires: 2026-11-27T03:10:00Z"), "line 6 (expires)"},
		{"grant upper-case purpose", rep(grant, stmtHexString(stmtPurpose), strings.ToUpper(stmtHexString(stmtPurpose))), "line 5 (purpose-sha256)"},
	} {
		_, err := ParseStatement([]byte(tc.in))
		if !errors.Is(err, ErrStatement) {
			t.Errorf("%s: ParseStatement accepted %q (err %v)", tc.name, tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		// The kind-specific parsers agree.
		for _, p := range []func([]byte) error{
			func(b []byte) error { _, err := ParseSubmission(b); return err },
			func(b []byte) error { _, err := ParseApproval(b); return err },
			func(b []byte) error { _, err := ParseRejection(b); return err },
			func(b []byte) error { _, err := ParseGrant(b); return err },
		} {
			if err := p([]byte(tc.in)); !errors.Is(err, ErrStatement) {
				t.Errorf("%s: a kind parser accepted it (err %v)", tc.name, err)
			}
		}
	}
}

func stmtHexString(d [32]byte) string { return hex.EncodeToString(d[:]) }

// TestStatementParseLarge checks that oversized input is refused up front:
// a server parses every statement it receives.
func TestStatementParseLarge(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 10<<20)
	if _, err := ParseStatement(big); !errors.Is(err, ErrStatement) {
		t.Fatalf("accepted a 10 MiB input: %v", err)
	}
}
