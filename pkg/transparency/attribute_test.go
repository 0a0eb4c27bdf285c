package transparency_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

func TestAttribute(t *testing.T) {
	// Record r1 is bound to alice by an earlier approval.
	bound := func(record string) (string, error) {
		if record == "r1" {
			return "alice", nil
		}
		return "", nil
	}
	unsigned := func(leaf []byte) []byte {
		stmt, _, err := transparency.SplitLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		return stmt
	}
	tests := []struct {
		name    string
		leaf    []byte
		want    transparency.Attribution
		wantErr error
		errHas  string
	}{
		{"chain link", transparencytest.ChainLink("alice", 0, "phone"), transparency.Attribution{User: "alice", History: transparency.Chain}, nil, ""},
		{"chain reset", transparencytest.ChainReset("alice", 1), transparency.Attribution{User: "alice", History: transparency.Chain}, nil, ""},
		{"approval binds record", transparencytest.Approval("r2", "bob"), transparency.Attribution{User: "bob", History: transparency.Decisions, Record: "r2"}, nil, ""},
		{"approval of bound record", transparencytest.Approval("r1", "alice"), transparency.Attribution{User: "alice", History: transparency.Decisions, Record: "r1"}, nil, ""},
		{"rejection", transparencytest.Rejection("r2", "bob"), transparency.Attribution{User: "bob", History: transparency.Decisions, Record: "r2"}, nil, ""},
		{"grant of bound record", transparencytest.Grant("r1", "auditor"), transparency.Attribution{User: "alice", History: transparency.Decisions}, nil, ""},
		{"revocation", transparencytest.Revocation("g1", "auditor"), transparency.Attribution{}, nil, ""},
		{"map leaf", transparency.MapLeaf{Size: 3}.Marshal(), transparency.Attribution{}, nil, ""},

		{"grant of unbound record", transparencytest.Grant("r9", "auditor"), transparency.Attribution{}, transparency.ErrAttribution, "record r9"},
		{"approval of record bound to another user", transparencytest.Approval("r1", "mallory"), transparency.Attribution{}, transparency.ErrAttribution, "bound to user alice"},
		{"rejection of record bound to another user", transparencytest.Rejection("r1", "mallory"), transparency.Attribution{}, transparency.ErrAttribution, "names user mallory"},
		{"unsigned chain link", unsigned(transparencytest.ChainLink("alice", 0, "phone")), transparency.Attribution{}, transparency.ErrFormat, "without its signature"},
		{"unsigned approval", unsigned(transparencytest.Approval("r1", "alice")), transparency.Attribution{}, transparency.ErrFormat, "without its signature"},
		{"signed chain reset", transparency.Leaf(transparencytest.ChainReset("alice", 1), []byte("sig")), transparency.Attribution{}, transparency.ErrFormat, "log leaf"},
		{"submission", transparencytest.Submission("alice"), transparency.Attribution{}, transparency.ErrFormat, "not a log leaf"},
		{"garbage", []byte("hello\n"), transparency.Attribution{}, transparency.ErrFormat, "not a map leaf"},
		{"bad map leaf", []byte(transparency.MapLeafHeader + "\nsize: -1\nroot: 00\n"), transparency.Attribution{}, transparency.ErrFormat, "map leaf"},
		{"no final newline", []byte("x"), transparency.Attribution{}, transparency.ErrFormat, "newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := transparency.Attribute(tt.leaf, bound)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Attribute: %v, want %v containing %q", err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Attribute = %+v, %v, want %+v", got, err, tt.want)
			}
		})
	}
}

func TestAttributeRecordUserError(t *testing.T) {
	boom := errors.New("database down")
	_, err := transparency.Attribute(transparencytest.Grant("r1", "auditor"), func(string) (string, error) { return "", boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Attribute: %v, want the lookup's error", err)
	}
}
