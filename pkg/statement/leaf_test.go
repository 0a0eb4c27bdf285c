package statement

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func stmtRevocation() *Revocation {
	return &Revocation{Kind: RevokedGrant, ID: "5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d", Fingerprint: stmtGrantee,
		Time: stmtTime("2026-11-28T09:10:11Z")}
}

func stmtChainReset() *ChainReset {
	return &ChainReset{User: stmtUser, Epoch: 1, Time: stmtTime("2026-11-28T08:00:00Z")}
}

// TestLeafBytes: the leaves are byte for byte the texts the server logged
// before they had types (fmt.Appendf in pkg/api and internal/store), and
// they parse back.
func TestLeafBytes(t *testing.T) {
	r := stmtRevocation()
	want := fmt.Appendf(nil, "keyholder-revocation-v1\nkind: %s\nid: %s\nfingerprint: %s\ntime: %s\n",
		"grant", r.ID, r.Fingerprint, r.Time.UTC().Format(time.RFC3339))
	got := stmtMarshal(t, r)
	if string(got) != string(want) {
		t.Errorf("Revocation.Marshal = %q, want %q", got, want)
	}
	if back, err := ParseRevocation(got); err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("ParseRevocation = %+v, %v", back, err)
	}

	c := stmtChainReset()
	c.Epoch = 12
	want = fmt.Appendf(nil, "keyholder-chain-reset-v1\nuser: %s\nepoch: %d\ntime: %s\n",
		c.User, c.Epoch, c.Time.UTC().Format(time.RFC3339))
	got = stmtMarshal(t, c)
	if string(got) != string(want) {
		t.Errorf("ChainReset.Marshal = %q, want %q", got, want)
	}
	if back, err := ParseChainReset(got); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("ParseChainReset = %+v, %v", back, err)
	}
	// docs/protocol.md §5.5 shows this reset.
	doc := "keyholder-chain-reset-v1\nuser: 0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f\nepoch: 1\ntime: 2026-11-28T08:00:00Z\n"
	if got := stmtMarshal(t, stmtChainReset()); string(got) != doc {
		t.Errorf("the reset of docs/protocol.md is %q", got)
	}
}

// TestLeafNotSigned: log leaves are not statements a key signs.
func TestLeafNotSigned(t *testing.T) {
	device := stmtKey(t, "device")
	for _, leaf := range []stmtMarshaler{stmtRevocation(), stmtChainReset()} {
		b := stmtMarshal(t, leaf)
		_, err := ParseStatement(b)
		if !errors.Is(err, ErrStatement) || !strings.Contains(err.Error(), "is a log leaf, not a signed statement") {
			t.Errorf("ParseStatement(%T): %v", leaf, err)
		}
		if _, err := Sign(b, device); !errors.Is(err, ErrStatement) {
			t.Errorf("Sign(%T): %v", leaf, err)
		}
		sig := stmtRawSign(t, stmtSigningPriv(t, device), b, time.Now(), nil)
		stmtWantBadSig(t, fmt.Sprintf("signature over a %T", leaf), Verify(b, stmtArmor(t, sig), device), ErrStatement)
		for typ, parse := range stmtParsers {
			if _, err := parse(b); !errors.Is(err, ErrStatement) {
				t.Errorf("the parser for %v accepted a %T: %v", typ, leaf, err)
			}
		}
	}
	// Nor is a statement a leaf.
	for _, ex := range stmtExamples() {
		b := stmtMarshal(t, ex.s)
		if _, err := ParseRevocation(b); !errors.Is(err, ErrStatement) {
			t.Errorf("ParseRevocation accepted %s: %v", ex.file, err)
		}
		if _, err := ParseChainReset(b); !errors.Is(err, ErrStatement) {
			t.Errorf("ParseChainReset accepted %s: %v", ex.file, err)
		}
	}
}

func TestLeafStrict(t *testing.T) {
	r, c := stmtRevocation(), stmtChainReset()
	for _, tc := range []struct {
		name  string
		leaf  stmtMarshaler
		field string
	}{
		{"nil revocation", (*Revocation)(nil), "nil"},
		{"nil reset", (*ChainReset)(nil), "nil"},
		{"revoked device", &Revocation{Kind: "device", ID: r.ID, Fingerprint: r.Fingerprint, Time: r.Time}, "kind"},
		{"no id", &Revocation{Kind: r.Kind, Fingerprint: r.Fingerprint, Time: r.Time}, "id"},
		{"lower-case fingerprint", &Revocation{Kind: r.Kind, ID: r.ID, Fingerprint: strings.ToLower(r.Fingerprint), Time: r.Time}, "fingerprint"},
		{"revocation fraction", &Revocation{Kind: r.Kind, ID: r.ID, Fingerprint: r.Fingerprint, Time: r.Time.Add(time.Millisecond)}, "time"},
		{"epoch 0", &ChainReset{User: c.User, Time: c.Time}, "epoch"},
		{"negative epoch", &ChainReset{User: c.User, Epoch: -1, Time: c.Time}, "epoch"},
		{"reset without time", &ChainReset{User: c.User, Epoch: 1}, "time"},
		{"reset user newline", &ChainReset{User: "a\nepoch: 2", Epoch: 1, Time: c.Time}, "user"},
	} {
		if _, err := tc.leaf.Marshal(); !errors.Is(err, ErrStatement) || !stmtNamesField(err, tc.field) {
			t.Errorf("%s: Marshal: %v", tc.name, err)
		}
	}

	rev, reset := string(stmtMarshal(t, r)), string(stmtMarshal(t, c))
	for _, tc := range []struct{ name, in, want string }{
		{"epoch 0", stmtRep(t, reset, "epoch: 1", "epoch: 0"), "line 3 (epoch): 0 is not 1 or more"},
		{"epoch leading zero", stmtRep(t, reset, "epoch: 1", "epoch: 01"), "line 3 (epoch)"},
		{"reset crlf", strings.ReplaceAll(reset, "\n", "\r\n"), "carriage return"},
		{"reset trailing space", stmtRep(t, reset, "08:00:00Z", "08:00:00Z "), "line 4 (time)"},
		{"revoked device", stmtRep(t, rev, "kind: grant", "kind: device"), "line 2 (kind): kind must be grant"},
		{"revocation duplicate field", rev + "time: 2026-11-28T09:10:11Z\n", "duplicate field"},
		{"revocation offset time", stmtRep(t, rev, "09:10:11Z", "10:10:11+01:00"), "line 5 (time)"},
	} {
		_, err1 := ParseRevocation([]byte(tc.in))
		_, err2 := ParseChainReset([]byte(tc.in))
		if !errors.Is(err1, ErrStatement) || !errors.Is(err2, ErrStatement) {
			t.Errorf("%s: accepted (%v, %v)", tc.name, err1, err2)
			continue
		}
		if !strings.Contains(err1.Error(), tc.want) && !strings.Contains(err2.Error(), tc.want) {
			t.Errorf("%s: errors %q and %q do not contain %q", tc.name, err1, err2, tc.want)
		}
	}
}
