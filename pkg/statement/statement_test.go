package statement

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/keyholder/keyholder/pkg/envelope"
)

var updateStatements = flag.Bool("update-statements", false, "rewrite testdata/statements golden files")

// Example values used across the statement tests and the golden files
// (docs/protocol.md shows the same statements). TestStatementGolden checks
// that each digest is what its comment says.
var (
	stmtCiphertext = envelope.DataDigest{
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
	// SHA-256("keyholder example key packets")
	stmtKeyPackets = stmtHex("67e009bfc34442734b0c0b4db6091904a798eec439c449e98483309a08e9b85e")
	// The id of the session key SHA-256("keyholder example session key"):
	// HMAC-SHA256 keyed with it over "keyholder-session-key-id-v1".
	stmtSessionKeyID = stmtHex("a19e1069cb2e70d793468d941d3f80deb1ef0324ede4423d238ec6d85310e3c7")
	// SHA-256("keyholder example device key")
	stmtDeviceKey = stmtHex("d28938d5af93f92384bc5cba87d1432e413ca5f1166d494ae7a61cf1713ef05d")
	// SHA-256("keyholder example second device key")
	stmtDevice2Key = stmtHex("cfabec9b6689b49a5a60968b15d0285e0f145b5ac07335ba3b444c2b4e39e38e")
)

const (
	stmtRecord    = "3f2a9c0d1e6b4a7f8c5d2e1b0a9f8e7d"
	stmtUser      = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
	stmtDevice    = "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293"
	stmtDevice2   = "3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E"
	stmtSubmitter = "E4F5A6B7C8D9E0F1A2B3C4D5E6F7A8B9C0D1E2F3"
	stmtGrantee   = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"
)

// stmtVersions are the version lines of the statement kinds this package
// accepts, written out here rather than taken from statement.go.
var stmtVersions = []string{
	"keyholder-submission-v2", "keyholder-approval-v2", "keyholder-rejection-v2",
	"keyholder-grant-v1", "keyholder-auth-v1", "keyholder-chain-link-v1",
}

// stmtRetired are the version lines that are refused by name.
var stmtRetired = []string{"keyholder-submission-v1", "keyholder-approval-v1", "keyholder-rejection-v1"}

// stmtSessionKeyIDOf computes a session key's id from its definition
// (docs/protocol.md §3.4): HMAC-SHA256 keyed with the session key over
// "keyholder-session-key-id-v1".
func stmtSessionKeyIDOf(sessionKey []byte) [32]byte {
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte("keyholder-session-key-id-v1"))
	return [32]byte(m.Sum(nil))
}

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
	return &Submission{User: stmtUser, Submitter: stmtSubmitter, KeyPackets: stmtKeyPackets,
		Ciphertext: stmtCiphertext, MetadataSHA256: stmtMetadata}
}

func stmtApproval() *Approval {
	return &Approval{
		Record: stmtRecord, User: stmtUser, Device: stmtDevice, Submitter: stmtSubmitter,
		KeyPackets: stmtKeyPackets, SessionKeyID: stmtSessionKeyID,
		Ciphertext: stmtCiphertext, MetadataSHA256: stmtMetadata,
		Request: "9e8d7c6b5a4f3e2d1c0b0a9f8e7d6c5b", Time: stmtTime("2026-11-27T03:04:05Z"),
	}
}

// stmtRejectionOf returns the rejection a device would sign instead of the
// approval a: the same record, request and bound values, no session key.
func stmtRejectionOf(a *Approval, reason string) *Rejection {
	return &Rejection{Record: a.Record, User: a.User, Device: a.Device, Submitter: a.Submitter, KeyPackets: a.KeyPackets,
		Ciphertext: a.Ciphertext, MetadataSHA256: a.MetadataSHA256, Request: a.Request, Reason: reason, Time: a.Time}
}

func stmtRejection() *Rejection {
	r := stmtRejectionOf(stmtApproval(), ReasonDeclined)
	r.Time = stmtTime("2026-11-27T03:04:59Z")
	return r
}

func stmtGrant() *Grant {
	return &Grant{
		Record: stmtRecord, Grantee: stmtGrantee, KeyPacketSHA256: stmtKeyPacket, PurposeSHA256: stmtPurpose,
		Expires: stmtTime("2026-12-27T03:10:00Z"), Request: "5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d",
		Time: stmtTime("2026-11-27T03:10:00Z"),
	}
}

// stmtChainLink is the first link of the example user's key chain: the
// first device adds itself.
func stmtChainLink() *ChainLink {
	return &ChainLink{User: stmtUser, Seq: 0, Action: ActionAddDevice, Key: stmtDevice, KeySHA256: stmtDeviceKey,
		Signer: stmtDevice, Time: stmtTime("2026-11-20T09:00:00Z")}
}

// stmtChainLinkNext is the second link of the same chain: the first device
// adds a second one. Prev is the SHA-256 of the first link's statement.
func stmtChainLinkNext() *ChainLink {
	first, err := stmtChainLink().Marshal()
	if err != nil {
		panic(err)
	}
	return &ChainLink{User: stmtUser, Seq: 1, Prev: sha256.Sum256(first), Action: ActionAddDevice, Key: stmtDevice2,
		KeySHA256: stmtDevice2Key, Signer: stmtDevice, Time: stmtTime("2026-11-21T10:30:00Z")}
}

func stmtChallenge() *Challenge {
	return &Challenge{Nonce: "q3vV0d9cJ0cXW8Ff2v7m1yHn6oB5cT4e0Jt0o9Qz1aE", Fingerprint: stmtDevice}
}

// stmtExamples returns fresh copies of the example statements in the
// golden files, by file name: one of each kind a device or party signs
// about a record, and the first two links of a key chain.
func stmtExamples() []stmtExample {
	return []stmtExample{
		{"submission.txt", stmtSubmission()},
		{"approval.txt", stmtApproval()},
		{"rejection.txt", stmtRejection()},
		{"grant.txt", stmtGrant()},
		{"chain-link.txt", stmtChainLink()},
		{"chain-link-next.txt", stmtChainLinkNext()},
	}
}

type stmtExample struct {
	file string
	s    stmtMarshaler
}

// stmtMarshaler is what all statement types have in common.
type stmtMarshaler interface{ Marshal() ([]byte, error) }

func stmtMarshal(t testing.TB, s stmtMarshaler) []byte {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", s, err)
	}
	return b
}

// stmtParsers are the kind-specific parsers, by the type they return.
var stmtParsers = map[reflect.Type]func([]byte) (any, error){
	reflect.TypeFor[*Submission](): func(b []byte) (any, error) { return ParseSubmission(b) },
	reflect.TypeFor[*Approval]():   func(b []byte) (any, error) { return ParseApproval(b) },
	reflect.TypeFor[*Rejection]():  func(b []byte) (any, error) { return ParseRejection(b) },
	reflect.TypeFor[*Grant]():      func(b []byte) (any, error) { return ParseGrant(b) },
	reflect.TypeFor[*Challenge]():  func(b []byte) (any, error) { return ParseChallenge(b) },
	reflect.TypeFor[*ChainLink]():  func(b []byte) (any, error) { return ParseChainLink(b) },
}

// stmtParseAs parses b with the parser of the same kind as want.
func stmtParseAs(want any, b []byte) (any, error) {
	parse, ok := stmtParsers[reflect.TypeOf(want)]
	if !ok {
		panic("unknown statement type")
	}
	return parse(b)
}

// stmtRep replaces the first old in s with new; old must be there.
func stmtRep(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("test bug: %q not in statement", old)
	}
	return strings.Replace(s, old, new, 1)
}

// stmtRefused asserts that ParseStatement and every kind-specific parser
// refuse in with ErrStatement, and that ParseStatement's error contains
// want (which names the line and field).
func stmtRefused(t *testing.T, name, in, want string) {
	t.Helper()
	_, err := ParseStatement([]byte(in))
	if !errors.Is(err, ErrStatement) {
		t.Errorf("%s: ParseStatement accepted %q (err %v)", name, in, err)
		return
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %q does not contain %q", name, err, want)
	}
	for typ, parse := range stmtParsers {
		if _, err := parse([]byte(in)); !errors.Is(err, ErrStatement) {
			t.Errorf("%s: the parser for %v accepted it (err %v)", name, typ, err)
		}
	}
}

// stmtTestdata returns the file testdata/statements/<name>.
func stmtTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "statements", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stmtGoldenFile writes got to the file path when update is set, and
// returns what the file holds.
func stmtGoldenFile(t testing.TB, path string, got []byte, update bool) []byte {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stmtNamesField reports whether a Marshal error names field (as
// "<version> <field>: ...") or, for field "nil", a nil statement.
func stmtNamesField(err error, field string) bool {
	if field == "nil" {
		return strings.Contains(err.Error(), ": nil keyholder-")
	}
	return strings.Contains(err.Error(), " "+field+": ")
}

func TestStatementGolden(t *testing.T) {
	// The example digests are what the comments above say they are.
	sessionKey := sha256.Sum256([]byte("keyholder example session key"))
	for what, d := range map[string][2][32]byte{
		"ciphertext":     {sha256.Sum256([]byte("keyholder example ciphertext")), stmtCiphertext.SHA256},
		"metadata":       {MetadataDigest([]byte(`{"title":"Blood test, November 2026","content_type":"application/pdf"}`), nil), stmtMetadata},
		"key packet":     {sha256.Sum256([]byte("keyholder example key packet")), stmtKeyPacket},
		"purpose":        {PurposeDigest("Quarterly audit of account statements"), stmtPurpose},
		"key packets":    {sha256.Sum256([]byte("keyholder example key packets")), stmtKeyPackets},
		"session key id": {stmtSessionKeyIDOf(sessionKey[:]), stmtSessionKeyID},
		"device key":     {sha256.Sum256([]byte("keyholder example device key")), stmtDeviceKey},
		"device 2 key":   {sha256.Sum256([]byte("keyholder example second device key")), stmtDevice2Key},
	} {
		if d[0] != d[1] {
			t.Errorf("example %s digest is stale: %x, comment says %x", what, d[1], d[0])
		}
	}
	for _, tc := range stmtExamples() {
		path := filepath.Join("testdata", "statements", tc.file)
		got := stmtMarshal(t, tc.s)
		want := stmtGoldenFile(t, path, got, *updateStatements)
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
	// The second link names the first one's file, byte for byte.
	if stmtChainLinkNext().Prev != sha256.Sum256(stmtTestdata(t, "chain-link.txt")) {
		t.Error("chain-link-next.txt does not name chain-link.txt as prev")
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
	rej.Reason = strings.Repeat("z-9", 21) + "a" // 64 characters
	rej.Time = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	gr := stmtGrant()
	gr.Grantee = fp64
	gr.Expires = gr.Time.Add(time.Second)
	// A v6 device starts a chain; later links of every action, up to the
	// last sequence number.
	first := stmtChainLink()
	first.Key, first.Signer = fp64, fp64
	revoke := stmtChainLinkNext()
	revoke.Seq, revoke.Action = math.MaxInt64, ActionRevokeDevice
	setRecovery := stmtChainLinkNext()
	setRecovery.Seq, setRecovery.Action, setRecovery.Key = 2, ActionSetRecovery, fp64
	removeRecovery := stmtChainLinkNext()
	removeRecovery.Seq, removeRecovery.Action, removeRecovery.User = 3, ActionRemoveRecovery, long
	// A time in another zone is written in UTC and read back as the same
	// instant.
	zoned := stmtApproval()
	zoned.Time = time.Date(2026, 11, 27, 4, 4, 5, 0, time.FixedZone("CET", 3600))

	all := []stmtMarshaler{sub, appr, rej, gr, first, revoke, setRecovery, removeRecovery, zoned, stmtChallenge()}
	for _, ex := range stmtExamples() {
		all = append(all, ex.s)
	}
	for _, s := range all {
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
	if b := stmtMarshal(t, first); !bytes.Contains(b, []byte("\nseq: 0\nprev: none\n")) {
		t.Errorf("first link does not say prev none:\n%s", b)
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
		case *ChainLink:
			c := *s
			c.Time = c.Time.UTC()
			return c
		case *Submission:
			return *s
		case *Challenge:
			return *s
		}
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// TestStatementKindsDiffer: a statement of one kind never parses as
// another, not even with its version line swapped for the other kind's. In
// particular a rejection is never an approval, and an approval is never a
// rejection.
func TestStatementKindsDiffer(t *testing.T) {
	all := []stmtMarshaler{stmtChallenge()}
	for _, ex := range stmtExamples() {
		all = append(all, ex.s)
	}
	for _, s := range all {
		b := stmtMarshal(t, s)
		own := reflect.TypeOf(s)
		if got, err := ParseStatement(b); err != nil || reflect.TypeOf(got) != own {
			t.Errorf("ParseStatement gave %T, %v for a %v", got, err, own)
		}
		for typ, parse := range stmtParsers {
			if _, err := parse(b); typ != own && !errors.Is(err, ErrStatement) {
				t.Errorf("the parser for %v accepted a %v: %v", typ, own, err)
			}
		}
		version, rest, _ := strings.Cut(string(b), "\n")
		for _, other := range append(stmtVersions, stmtRetired...) {
			if other != version {
				stmtRefused(t, fmt.Sprintf("%v under %s", own, other), other+"\n"+rest, "line ")
			}
		}
	}

	// The rejection and the approval of the same record and request.
	a := stmtApproval()
	r := stmtRejectionOf(a, ReasonDeclined)
	if _, err := ParseApproval(stmtMarshal(t, r)); !errors.Is(err, ErrStatement) {
		t.Errorf("ParseApproval accepted a rejection: %v", err)
	}
	if _, err := ParseRejection(stmtMarshal(t, a)); !errors.Is(err, ErrStatement) {
		t.Errorf("ParseRejection accepted an approval: %v", err)
	}
	// Decision gives back what the two share, with no session key id.
	want := *a
	want.SessionKeyID = [32]byte{}
	if d := r.Decision(); !reflect.DeepEqual(*d, want) {
		t.Errorf("Decision() = %+v, want %+v", *d, want)
	}
	if _, err := r.Decision().Marshal(); !errors.Is(err, ErrStatement) {
		t.Errorf("a rejection's Decision marshals as an approval: %v", err)
	}
}

func TestStatementMarshalErrors(t *testing.T) {
	type mod func()
	var (
		s = stmtSubmission()
		a = stmtApproval()
		r = stmtRejection()
		g = stmtGrant()
		l = stmtChainLinkNext()
	)
	reset := func() {
		s, a, r, g, l = stmtSubmission(), stmtApproval(), stmtRejection(), stmtGrant(), stmtChainLinkNext()
	}
	sub := func() stmtMarshaler { return s }
	appr := func() stmtMarshaler { return a }
	rej := func() stmtMarshaler { return r }
	grant := func() stmtMarshaler { return g }
	link := func() stmtMarshaler { return l }
	for _, tc := range []struct {
		name  string
		field string // must be named in the error: "<version> <field>: ..."; "nil" for a nil statement
		edit  mod
		what  func() stmtMarshaler
	}{
		{"empty user", "user", func() { s.User = "" }, sub},
		{"user too long", "user", func() { s.User = strings.Repeat("a", 65) }, sub},
		{"user with space", "user", func() { s.User = "a b" }, sub},
		{"user with newline", "user", func() { s.User = "a\nrecord: b" }, sub},
		{"user non-ASCII", "user", func() { s.User = "usér" }, sub},
		{"lower-case fingerprint", "submitter", func() { s.Submitter = strings.ToLower(stmtSubmitter) }, sub},
		{"short fingerprint", "submitter", func() { s.Submitter = stmtSubmitter[:39] }, sub},
		{"key id as fingerprint", "submitter", func() { s.Submitter = stmtSubmitter[:16] }, sub},
		{"negative size", "ciphertext-size", func() { s.Ciphertext.Size = -1 }, sub},
		{"zero ciphertext digest", "ciphertext-sha256", func() { s.Ciphertext.SHA256 = [32]byte{} }, sub},
		{"zero metadata digest", "metadata-sha256", func() { s.MetadataSHA256 = [32]byte{} }, sub},
		{"submission zero key packets", "key-packets-sha256", func() { s.KeyPackets = [32]byte{} }, sub},
		{"zero time", "time", func() { a.Time = time.Time{} }, appr},
		{"fractional time", "time", func() { a.Time = a.Time.Add(time.Millisecond) }, appr},
		{"monotonic now", "time", func() { a.Time = time.Now().Add(time.Nanosecond) }, appr},
		{"time before 1970", "time", func() { a.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }, appr},
		{"time after 9999", "time", func() { a.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, appr},
		{"empty record", "record", func() { a.Record = "" }, appr},
		{"bad device", "device", func() { a.Device = "" }, appr},
		{"bad request", "request", func() { a.Request = "req/1" }, appr},
		{"approval zero key packets", "key-packets-sha256", func() { a.KeyPackets = [32]byte{} }, appr},
		{"approval zero session key id", "session-key-id", func() { a.SessionKeyID = [32]byte{} }, appr},
		{"rejection bad submitter", "submitter", func() { r.Submitter = "X" }, rej},
		{"rejection zero key packets", "key-packets-sha256", func() { r.KeyPackets = [32]byte{} }, rej},
		{"rejection empty reason", "reason", func() { r.Reason = "" }, rej},
		{"rejection reason with newline", "reason", func() { r.Reason = "declined\ntime: 2026-11-27T03:04:59Z" }, rej},
		{"rejection zero time", "time", func() { r.Time = time.Time{} }, rej},
		{"grant zero key packet", "key-packet-sha256", func() { g.KeyPacketSHA256 = [32]byte{} }, grant},
		{"grant zero purpose", "purpose-sha256", func() { g.PurposeSHA256 = [32]byte{} }, grant},
		{"grant zero expiry", "expires", func() { g.Expires = time.Time{} }, grant},
		{"grant expires at time", "expires", func() { g.Expires = g.Time }, grant},
		{"grant expires before time", "expires", func() { g.Expires = g.Time.Add(-time.Hour) }, grant},
		{"grant bad grantee", "grantee", func() { g.Grantee = "" }, grant},
		{"link bad user", "user", func() { l.User = "a/b" }, link},
		{"link negative seq", "seq", func() { l.Seq = -1 }, link},
		{"link later without prev", "prev", func() { l.Prev = [32]byte{} }, link},
		{"link first with prev", "prev", func() { l.Seq = 0 }, link},
		{"link unknown action", "action", func() { l.Action = "add-key" }, link},
		{"link empty action", "action", func() { l.Action = "" }, link},
		{"link lower-case key", "key", func() { l.Key = strings.ToLower(stmtDevice2) }, link},
		{"link zero key digest", "key-sha256", func() { l.KeySHA256 = [32]byte{} }, link},
		{"link bad signer", "signer", func() { l.Signer = stmtDevice[:16] }, link},
		{"link zero time", "time", func() { l.Time = time.Time{} }, link},
		{"link fractional time", "time", func() { l.Time = l.Time.Add(time.Microsecond) }, link},
		{"nil submission", "nil", func() { s = nil }, sub},
		{"nil approval", "nil", func() { a = nil }, appr},
		{"nil rejection", "nil", func() { r = nil }, rej},
		{"nil grant", "nil", func() { g = nil }, grant},
		{"nil chain link", "nil", func() { l = nil }, link},
	} {
		reset()
		tc.edit()
		b, err := tc.what().Marshal()
		if !errors.Is(err, ErrStatement) {
			t.Errorf("%s: Marshal gave %q, %v; want ErrStatement", tc.name, b, err)
			continue
		}
		if !stmtNamesField(err, tc.field) {
			t.Errorf("%s: error %q does not name %q", tc.name, err, tc.field)
		}
	}
}

func TestStatementParseStrict(t *testing.T) {
	appr := string(stmtMarshal(t, stmtApproval()))
	sub := string(stmtMarshal(t, stmtSubmission()))
	rejection := string(stmtMarshal(t, stmtRejection()))
	grant := string(stmtMarshal(t, stmtGrant()))
	rep := func(s, old, new string) string { return stmtRep(t, s, old, new) }
	const fpLine = "device: " + stmtDevice + "\n"
	skidLine := "session-key-id: " + stmtHexString(stmtSessionKeyID) + "\n"
	kpLine := "key-packets-sha256: " + stmtHexString(stmtKeyPackets) + "\n"
	// Approval lines: 1 version, 2 record, 3 user, 4 device, 5 submitter,
	// 6 key-packets-sha256, 7 session-key-id, 8 ciphertext-sha256,
	// 9 ciphertext-size, 10 metadata-sha256, 11 request, 12 time.
	for _, tc := range []struct {
		name string
		in   string
		want string // substring of the error: names the line and field
	}{
		{"empty", "", "empty statement"},
		{"only newline", "\n", "line 1"},
		{"unknown version", rep(appr, "keyholder-approval-v2", "keyholder-approval-v3"), "line 1: unknown statement version"},
		{"version with space", rep(appr, "keyholder-approval-v2", "keyholder-approval-v2 "), "line 1"},
		{"no version line", appr[len("keyholder-approval-v2\n"):], "line 1"},
		{"CRLF", strings.ReplaceAll(appr, "\n", "\r\n"), "line 1: carriage return"},
		{"CR in value", rep(appr, "user: 0c1d", "user: 0c1d\r"), "line 3: carriage return"},
		{"CR at end", appr + "\r", "carriage return"},
		{"missing final newline", strings.TrimSuffix(appr, "\n"), "line 12: missing final newline"},
		{"empty line in middle", rep(appr, fpLine, "\n"+fpLine), "line 4 (device): empty line"},
		{"empty line at end", appr + "\n", "line 13: empty line after the last field"},
		{"bytes after last line", appr + "x", "missing final newline"},
		{"extra line after last", appr + "note: hi\n", "line 13: unexpected line"},
		{"duplicate last field", appr + "time: 2026-11-27T03:04:05Z\n", "line 13: duplicate field \"time\""},
		{"unknown field", rep(appr, fpLine, "note: x\n"+fpLine), "line 4 (device): unknown field \"note\""},
		{"duplicate field", rep(appr, fpLine, "user: "+stmtUser+"\n"+fpLine), "line 4 (device): duplicate field \"user\""},
		{"missing field", rep(appr, fpLine, ""), "line 4 (device): field \"submitter\" out of order"},
		{"missing last field", appr[:strings.Index(appr, "time: ")], "line 12 (time): missing field"},
		{"reordered fields", rep(rep(appr, "record: "+stmtRecord+"\n", ""), "user: "+stmtUser+"\n", "user: "+stmtUser+"\nrecord: "+stmtRecord+"\n"), "line 2 (record): field \"user\" out of order"},
		{"reordered new fields", rep(rep(appr, kpLine, ""), skidLine, skidLine+kpLine), "line 6 (key-packets-sha256): field \"session-key-id\" out of order"},
		{"upper-case name", rep(appr, "device:", "Device:"), "line 4 (device): unknown field \"Device\""},
		{"space before colon", rep(appr, "device:", "device :"), "line 4 (device): unknown field"},
		{"no space after colon", rep(appr, "device: ", "device:"), "line 4 (device): want"},
		{"tab after colon", rep(appr, "device: ", "device:\t"), "line 4 (device)"},
		{"double space", rep(appr, "device: ", "device:  "), "line 4 (device): fingerprint"},
		{"trailing space", rep(appr, stmtDevice, stmtDevice+" "), "line 4 (device): fingerprint"},
		{"trailing space on version", rep(appr, "v2\n", "v2 \n"), "line 1"},
		{"leading space", rep(appr, fpLine, " "+fpLine), "line 4 (device)"},
		{"lower-case fingerprint", rep(appr, stmtDevice, strings.ToLower(stmtDevice)), "line 4 (device): fingerprint must be upper-case hex"},
		{"short fingerprint", rep(appr, stmtDevice, stmtDevice[:38]), "line 4 (device): fingerprint must be 40 or 64"},
		{"upper-case digest", rep(appr, stmtCiphertext.Hex(), strings.ToUpper(stmtCiphertext.Hex())), "line 8 (ciphertext-sha256): SHA-256 must be lower-case hex"},
		{"short digest", rep(appr, stmtCiphertext.Hex(), stmtCiphertext.Hex()[2:]), "line 8 (ciphertext-sha256)"},
		{"zero digest", rep(appr, stmtCiphertext.Hex(), strings.Repeat("0", 64)), "line 8 (ciphertext-sha256): SHA-256 is all zero"},
		{"zero key packets digest", rep(appr, stmtHexString(stmtKeyPackets), strings.Repeat("0", 64)), "line 6 (key-packets-sha256): SHA-256 is all zero"},
		{"upper-case session key id", rep(appr, stmtHexString(stmtSessionKeyID), strings.ToUpper(stmtHexString(stmtSessionKeyID))), "line 7 (session-key-id): SHA-256 must be lower-case hex"},
		{"zero session key id", rep(appr, stmtHexString(stmtSessionKeyID), strings.Repeat("0", 64)), "line 7 (session-key-id): SHA-256 is all zero"},
		{"approval without session key id", rep(appr, skidLine, ""), "line 7 (session-key-id): field \"ciphertext-sha256\" out of order"},
		{"approval without key packets", rep(appr, kpLine, ""), "line 6 (key-packets-sha256): field \"session-key-id\" out of order"},
		{"size leading zero", rep(appr, "size: 1048576", "size: 01048576"), "line 9 (ciphertext-size): size has a leading zero"},
		{"size double zero", rep(appr, "size: 1048576", "size: 00"), "line 9 (ciphertext-size)"},
		{"size plus sign", rep(appr, "size: 1048576", "size: +1048576"), "line 9 (ciphertext-size)"},
		{"size minus sign", rep(appr, "size: 1048576", "size: -1"), "line 9 (ciphertext-size)"},
		{"size hex", rep(appr, "size: 1048576", "size: 0x100000"), "line 9 (ciphertext-size)"},
		{"size exponent", rep(appr, "size: 1048576", "size: 1e6"), "line 9 (ciphertext-size)"},
		{"size separator", rep(appr, "size: 1048576", "size: 1_048_576"), "line 9 (ciphertext-size)"},
		{"size empty", rep(appr, "size: 1048576", "size: "), "line 9 (ciphertext-size)"},
		{"size overflow", rep(appr, "size: 1048576", "size: 9223372036854775808"), "line 9 (ciphertext-size): size \"9223372036854775808\" does not fit"},
		{"size too long", rep(appr, "size: 1048576", "size: 10000000000000000000"), "line 9 (ciphertext-size)"},
		{"id too long", rep(appr, "record: "+stmtRecord, "record: "+strings.Repeat("a", 65)), "line 2 (record): id must be 1 to 64"},
		{"id bad char", rep(appr, "record: "+stmtRecord, "record: a.b"), "line 2 (record): id"},
		{"id empty", rep(appr, "record: "+stmtRecord, "record: "), "line 2 (record)"},
		{"time offset", rep(appr, "03:04:05Z", "04:04:05+01:00"), "line 12 (time): time must be RFC 3339"},
		{"time lower z", rep(appr, "03:04:05Z", "03:04:05z"), "line 12 (time)"},
		{"time fraction", rep(appr, "03:04:05Z", "03:04:05.000Z"), "line 12 (time)"},
		{"time space", rep(appr, "2026-11-27T", "2026-11-27 "), "line 12 (time)"},
		{"time no zone", rep(appr, "03:04:05Z", "03:04:05"), "line 12 (time)"},
		{"time lower t", rep(appr, "2026-11-27T", "2026-11-27t"), "line 12 (time)"},
		{"time bad day", rep(appr, "2026-11-27T", "2026-02-30T"), "line 12 (time)"},
		{"time leap second", rep(appr, "03:04:05Z", "23:59:60Z"), "line 12 (time)"},
		{"time hour 24", rep(appr, "03:04:05Z", "24:00:00Z"), "line 12 (time)"},
		{"time before 1970", rep(appr, "2026-11-27T", "1969-11-27T"), "line 12 (time): time 1969-11-27T03:04:05Z is outside"},
		{"time short year", rep(appr, "2026-11-27T", "226-11-27T"), "line 12 (time)"},
		{"invalid UTF-8", rep(appr, "user: ", "user: \xff"), "line 3: invalid UTF-8"},
		{"non-ASCII id", rep(appr, "record: "+stmtRecord, "record: récord"), "line 2 (record)"},
		{"NUL byte", rep(appr, "record: ", "record: \x00"), "line 2 (record)"},
		{"BOM", "\ufeff" + appr, "line 1"},
		{"too large", appr + strings.Repeat("x", MaxStatementSize), "more than 4096"},
		{"submission missing metadata", sub[:strings.Index(sub, "metadata-sha256")], "line 7 (metadata-sha256): missing field"},
		{"submission with record field", rep(sub, "user: ", "record: "+stmtRecord+"\nuser: "), "line 2 (user): unknown field \"record\""},
		{"submission without key packets", rep(sub, kpLine, ""), "line 4 (key-packets-sha256): field \"ciphertext-sha256\" out of order"},
		{"submission with session key id", rep(sub, kpLine, kpLine+skidLine), "line 5 (ciphertext-sha256): unknown field \"session-key-id\""},
		{"rejection with session key id", rep(rejection, kpLine, kpLine+skidLine), "line 7 (ciphertext-sha256): unknown field \"session-key-id\""},
		{"rejection without reason", rep(rejection, "reason: declined\n", ""), "line 11 (reason): field \"time\" out of order"},
		{"rejection reason after time", rep(rejection, "reason: declined\n", "") + "reason: declined\n", "line 11 (reason): field \"time\" out of order"},
		{"grant expires before time", rep(grant, "expires: 2026-12-27T03:10:00Z", "expires: 2026-11-27T03:09:59Z"), "line 6 (expires): 2026-11-27T03:09:59Z is not after time"},
		{"grant expires at time", rep(grant, "expires: 2026-12-27T03:10:00Z", "expires: 2026-11-27T03:10:00Z"), "line 6 (expires)"},
		{"grant upper-case purpose", rep(grant, stmtHexString(stmtPurpose), strings.ToUpper(stmtHexString(stmtPurpose))), "line 5 (purpose-sha256)"},
	} {
		stmtRefused(t, tc.name, tc.in, tc.want)
	}
}

func stmtHexString(d [32]byte) string { return hex.EncodeToString(d[:]) }

// TestRejectionReason: a reason is a token of 1 to 64 of a-z 0-9 -, so a
// rejection cannot carry free text (or a line of its own); Marshal and the
// parsers refuse anything else.
func TestRejectionReason(t *testing.T) {
	canonical := string(stmtMarshal(t, stmtRejection()))
	for _, reason := range []string{
		ReasonDeclined, ReasonSessionKeyReused, ReasonKeyPackets, ReasonSubmission, ReasonMetadata,
		"a", "0", "-", "--", "user-declined-2", strings.Repeat("z", 64),
	} {
		r := stmtRejection()
		r.Reason = reason
		b := stmtMarshal(t, r)
		if !bytes.Contains(b, []byte("\nreason: "+reason+"\n")) {
			t.Errorf("reason %q not written as its own line:\n%s", reason, b)
		}
		if got, err := ParseRejection(b); err != nil || got.Reason != reason {
			t.Errorf("reason %q: parsed %+v, %v", reason, got, err)
		}
	}
	for _, tc := range []struct{ name, reason string }{
		{"upper case", "Declined"},
		{"all upper case", "DECLINED"},
		{"space", "user declined"},
		{"empty", ""},
		{"65 characters", strings.Repeat("z", 65)},
		{"underscore", "key_packets"},
		{"dot", "declined."},
		{"non-ASCII", "décliné"},
		{"tab", "\tdeclined"},
		{"trailing space", "declined "},
		{"leading space", " declined"},
		{"NUL", "declined\x00"},
	} {
		r := stmtRejection()
		r.Reason = tc.reason
		if b, err := r.Marshal(); !errors.Is(err, ErrStatement) || !stmtNamesField(err, "reason") {
			t.Errorf("%s: Marshal gave %q, %v; want ErrStatement naming reason", tc.name, b, err)
		}
		in := stmtRep(t, canonical, "reason: declined\n", "reason: "+tc.reason+"\n")
		stmtRefused(t, tc.name, in, "line 11 (reason)")
	}
	// A reason that tries to end its line and restate the time.
	in := stmtRep(t, canonical, "reason: declined\n", "reason: declined\ntime: 2026-11-27T03:04:05Z\n")
	stmtRefused(t, "reason with a line of its own", in, "line 13: duplicate field \"time\"")
}

// TestChainLinkPrev: prev is "none" exactly in the first link (seq 0); a
// later link must name its predecessor, and the first may not name one, so
// a chain cannot be restarted or forked from its middle. Marshal and the
// parsers agree.
func TestChainLinkPrev(t *testing.T) {
	first := string(stmtMarshal(t, stmtChainLink()))
	next := string(stmtMarshal(t, stmtChainLinkNext()))
	prev := stmtChainLinkNext().Prev
	prevLine := "prev: " + stmtHexString(prev) + "\n"
	// Chain link lines: 1 version, 2 user, 3 seq, 4 prev, 5 action, 6 key,
	// 7 key-sha256, 8 signer, 9 time.
	for _, tc := range []struct {
		name string
		seq  int64
		prev [32]byte
		text string
		want string
	}{
		{"first link with a prev", 0, prev, stmtRep(t, first, "prev: none\n", prevLine), "line 4 (prev): the first link (seq 0), and only it, has prev none"},
		{"later link with prev none", 1, [32]byte{}, stmtRep(t, next, prevLine, "prev: none\n"), "line 4 (prev): the first link (seq 0), and only it, has prev none"},
		{"last link with prev none", math.MaxInt64, [32]byte{}, stmtRep(t, next, "seq: 1\n"+prevLine, "seq: 9223372036854775807\nprev: none\n"), "line 4 (prev)"},
		{"first link renumbered", 0, prev, stmtRep(t, next, "seq: 1\n", "seq: 0\n"), "line 4 (prev)"},
		{"later link renumbered", 1, [32]byte{}, stmtRep(t, first, "seq: 0\n", "seq: 1\n"), "line 4 (prev)"},
	} {
		l := stmtChainLink()
		l.Seq, l.Prev = tc.seq, tc.prev
		if b, err := l.Marshal(); !errors.Is(err, ErrStatement) || !stmtNamesField(err, "prev") {
			t.Errorf("%s: Marshal gave %q, %v; want ErrStatement naming prev", tc.name, b, err)
		}
		stmtRefused(t, tc.name, tc.text, tc.want)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"prev None", stmtRep(t, first, "prev: none", "prev: None"), "line 4 (prev): prev must be \"none\" or a SHA-256"},
		{"prev NONE", stmtRep(t, first, "prev: none", "prev: NONE"), "line 4 (prev)"},
		{"prev none with space", stmtRep(t, first, "prev: none", "prev: none "), "line 4 (prev)"},
		{"prev empty", stmtRep(t, first, "prev: none", "prev: "), "line 4 (prev)"},
		{"prev null", stmtRep(t, first, "prev: none", "prev: null"), "line 4 (prev)"},
		{"prev zero digest", stmtRep(t, next, prevLine, "prev: "+strings.Repeat("0", 64)+"\n"), "line 4 (prev): prev must be \"none\" or a SHA-256: SHA-256 is all zero"},
		{"prev upper case", stmtRep(t, next, prevLine, "prev: "+strings.ToUpper(stmtHexString(prev))+"\n"), "line 4 (prev)"},
		{"prev short", stmtRep(t, next, prevLine, prevLine[:len(prevLine)-3]+"\n"), "line 4 (prev)"},
		{"missing prev", stmtRep(t, next, prevLine, ""), "line 4 (prev): field \"action\" out of order"},
		{"seq leading zero", stmtRep(t, next, "seq: 1\n", "seq: 01\n"), "line 3 (seq): size has a leading zero"},
		{"seq negative", stmtRep(t, next, "seq: 1\n", "seq: -1\n"), "line 3 (seq)"},
		{"seq overflow", stmtRep(t, next, "seq: 1\n", "seq: 9223372036854775808\n"), "line 3 (seq)"},
		{"key lower case", stmtRep(t, next, "key: "+stmtDevice2, "key: "+strings.ToLower(stmtDevice2)), "line 6 (key)"},
		{"key-sha256 zero", stmtRep(t, next, stmtHexString(stmtDevice2Key), strings.Repeat("0", 64)), "line 7 (key-sha256)"},
		{"no signer", stmtRep(t, next, "signer: "+stmtDevice+"\n", ""), "line 8 (signer): field \"time\" out of order"},
	} {
		stmtRefused(t, tc.name, tc.text, tc.want)
	}
}

// TestChainLinkAction: only the four actions exist; anything else is
// refused rather than read as one of them.
func TestChainLinkAction(t *testing.T) {
	canonical := string(stmtMarshal(t, stmtChainLinkNext()))
	for _, action := range []string{ActionAddDevice, ActionRevokeDevice, ActionSetRecovery, ActionRemoveRecovery} {
		l := stmtChainLinkNext()
		l.Action = action
		if got, err := ParseChainLink(stmtMarshal(t, l)); err != nil || got.Action != action {
			t.Errorf("action %s: parsed %+v, %v", action, got, err)
		}
	}
	for _, action := range []string{
		"add-key", "revoke-key", "Add-Device", "ADD-DEVICE", "add_device", "adddevice", "add-device ",
		" add-device", "", "revoke", "set-recovery-key", "remove", "add-device,revoke-device", "add-devicé",
	} {
		l := stmtChainLinkNext()
		l.Action = action
		if b, err := l.Marshal(); !errors.Is(err, ErrStatement) || !stmtNamesField(err, "action") {
			t.Errorf("action %q: Marshal gave %q, %v; want ErrStatement naming action", action, b, err)
		}
		in := stmtRep(t, canonical, "action: add-device\n", "action: "+action+"\n")
		stmtRefused(t, "action "+action, in, "line 5 (action)")
	}
}

// TestStatementRetiredV1: the v1 submission, approval and rejection did not
// bind the record's key packets. Real v1 texts (the golden files and a
// GnuPG-signed submission from before v2, kept in
// testdata/statements/retired) are refused by every parser with an error
// that says they are no longer accepted; a device will not sign one, and a
// genuine signature over one does not verify.
func TestStatementRetiredV1(t *testing.T) {
	read := func(name string) []byte { return stmtTestdata(t, filepath.Join("retired", name)) }
	device := stmtKey(t, "device")
	for _, kind := range []string{"submission", "approval", "rejection"} {
		version := "keyholder-" + kind + "-v1"
		b := read(kind + "-v1.txt")
		if !bytes.HasPrefix(b, []byte(version+"\n")) {
			t.Fatalf("%s-v1.txt is not a %s statement", kind, version)
		}
		if bytes.Contains(b, []byte("key-packets-sha256")) {
			t.Fatalf("%s-v1.txt is not a real v1 text", kind)
		}
		check := func(who string, err error) {
			t.Helper()
			if !errors.Is(err, ErrStatement) {
				t.Errorf("%s accepted a %s: %v", who, version, err)
				return
			}
			if msg := err.Error(); !strings.Contains(msg, version+" is no longer accepted") || !strings.Contains(msg, "key packets") {
				t.Errorf("%s: error %q does not say that %s is no longer accepted, and why", who, msg, version)
			}
		}
		_, err := ParseStatement(b)
		check("ParseStatement", err)
		for typ, parse := range stmtParsers {
			_, err := parse(b)
			check(fmt.Sprintf("the parser for %v", typ), err)
		}
		_, err = Sign(b, device)
		check("Sign", err)
	}

	party, err := envelope.ParseKey(read("gnupg-party-v1.asc"))
	if err != nil {
		t.Fatal(err)
	}
	st, sig := read("gnupg-submission-v1.txt"), read("gnupg-submission-v1.txt.sig")
	// The signature itself is good...
	if _, err := openpgp.CheckDetachedSignature(openpgp.EntityList{party.Entity()}, bytes.NewReader(st), bytes.NewReader(sig), nil); err != nil {
		t.Fatalf("the retired fixture's signature does not check in go-crypto: %v", err)
	}
	// ...but what it signs is a statement no longer accepted.
	err = Verify(st, sig, party)
	stmtWantBadSig(t, "GnuPG-signed v1 submission", err, ErrStatement)
	if err != nil && !strings.Contains(err.Error(), "keyholder-submission-v1 is no longer accepted") {
		t.Errorf("Verify's error %q does not say the v1 submission is no longer accepted", err)
	}
}

// TestStatementParseLarge checks that oversized input is refused up front:
// a server parses every statement it receives.
func TestStatementParseLarge(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 10<<20)
	if _, err := ParseStatement(big); !errors.Is(err, ErrStatement) {
		t.Fatalf("accepted a 10 MiB input: %v", err)
	}
}
