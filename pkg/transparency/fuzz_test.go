package transparency_test

import (
	"encoding/json"
	"testing"

	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

// FuzzAttribute: any bytes are attributed or refused, never half-way.
func FuzzAttribute(f *testing.F) {
	for _, leaf := range [][]byte{
		transparencytest.ChainLink("alice", 0, "phone"), transparencytest.ChainReset("alice", 1),
		transparencytest.Approval("r1", "alice"), transparencytest.Rejection("r1", "alice"),
		transparencytest.Grant("r1", "auditor"), transparencytest.Revocation("g1", "auditor"),
		transparency.MapLeaf{Size: 1}.Marshal(), transparencytest.Submission("alice"),
	} {
		f.Add(leaf)
	}
	f.Fuzz(func(t *testing.T, leaf []byte) {
		a, err := transparency.Attribute(leaf, func(string) (string, error) { return "owner", nil })
		if err != nil && a != (transparency.Attribution{}) {
			t.Fatalf("Attribute returned %+v with %v", a, err)
		}
		if err == nil && (a.History == "") != (a.User == "") {
			t.Fatalf("Attribute = %+v", a)
		}
	})
}

// FuzzVerifyHistory: any proof a server sends is checked without a panic,
// and one that passes gives the map's count.
func FuzzVerifyHistory(f *testing.F) {
	l := transparencytest.NewLog(f, "keyholder.example.com/log")
	l.Append(transparencytest.ChainLink("alice", 0, "phone"), transparencytest.ChainLink("bob", 0, "phone"))
	l.Seal()
	tree := l.Tree()
	for _, user := range []string{"alice", "carol"} {
		b, err := json.Marshal(l.HistoryProof(user, transparency.Chain, 0, 0))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, user)
	}
	f.Fuzz(func(t *testing.T, b []byte, user string) {
		var p transparency.HistoryProof
		if json.Unmarshal(b, &p) != nil {
			return
		}
		st, err := transparency.VerifyHistory(tree, p, user, transparency.Chain, transparency.HistoryState{})
		if err == nil && st.Count != p.Count {
			t.Fatalf("VerifyHistory = %+v for a proof of count %d", st, p.Count)
		}
	})
}
