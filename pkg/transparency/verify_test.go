package transparency_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

func TestVerifyLeaf(t *testing.T) {
	l := newLog(t)
	approval := transparencytest.Approval("r1", "alice")
	i := l.Append(approval, transparencytest.Grant("r1", "auditor"))
	l.Seal()
	tree := l.Tree()
	if err := transparency.VerifyLeaf(tree, roundTrip(t, l.LeafProof(i, 0)), approval); err != nil {
		t.Fatalf("VerifyLeaf: %v", err)
	}
	wrongIndex := l.LeafProof(i+1, 0)
	shortHash := l.LeafProof(i, 0)
	shortHash.Proof[0] = shortHash.Proof[0][:5]
	outside := l.LeafProof(i, 0)
	outside.Index = tree.N
	tests := []struct {
		name    string
		proof   transparency.LeafProof
		leaf    []byte
		wantErr error
	}{
		{"leaf not in the log", l.LeafProof(i, 0), transparencytest.Approval("r1", "mallory"), transparency.ErrProof},
		{"proof of another index", wrongIndex, approval, transparency.ErrProof},
		{"index outside the tree", outside, approval, transparency.ErrProof},
		{"malformed proof", shortHash, approval, transparency.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := transparency.VerifyLeaf(tree, tt.proof, tt.leaf); !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyLeaf: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// historyLog: alice has two chain links and an approval and a grant, bob
// one chain link, carol nothing.
func historyLog(t *testing.T) (l *transparencytest.Log, firstMapLeaf int64) {
	l = transparencytest.NewLog(t, origin, "witness.example/w1")
	l.Append(transparencytest.ChainLink("alice", 0, "alice-phone"), transparencytest.ChainLink("bob", 0, "bob-phone"))
	firstMapLeaf = l.Seal()
	l.Append(transparencytest.Approval("r1", "alice"), transparencytest.ChainLink("alice", 1, "alice-laptop"),
		transparencytest.Grant("r1", "auditor"), transparencytest.Revocation("g1", "auditor"))
	l.Seal()
	return l, firstMapLeaf
}

func TestVerifyHistory(t *testing.T) {
	l, _ := historyLog(t)
	tree := l.Tree()
	// A reader that knows nothing learns both links; one that knows the
	// first learns the second and reaches the same state.
	full, err := transparency.VerifyHistory(tree, roundTrip(t, l.HistoryProof("alice", transparency.Chain, 0, 0)), "alice", transparency.Chain, transparency.HistoryState{})
	if err != nil || full.Count != 2 {
		t.Fatalf("VerifyHistory = %+v, %v", full, err)
	}
	first := transparency.HistoryState{Count: 1, Value: transparency.NextValue([32]byte{}, transparencytest.ChainLink("alice", 0, "alice-phone"))}
	next, err := transparency.VerifyHistory(tree, l.HistoryProof("alice", transparency.Chain, 0, 1), "alice", transparency.Chain, first)
	if err != nil || next != full {
		t.Fatalf("VerifyHistory from 1 = %+v, %v, want %+v", next, err, full)
	}
	dec, err := transparency.VerifyHistory(tree, l.HistoryProof("alice", transparency.Decisions, 0, 0), "alice", transparency.Decisions, transparency.HistoryState{})
	if err != nil || dec.Count != 2 {
		t.Fatalf("VerifyHistory of decisions (approval and grant) = %+v, %v", dec, err)
	}
	empty, err := transparency.VerifyHistory(tree, roundTrip(t, l.HistoryProof("carol", transparency.Chain, 0, 0)), "carol", transparency.Chain, transparency.HistoryState{})
	if err != nil || empty != (transparency.HistoryState{}) {
		t.Fatalf("VerifyHistory of an empty history = %+v, %v", empty, err)
	}
}

// TestVerifyHistoryAttacks: every way a server could show a user a
// history other than the one the log and its map hold.
func TestVerifyHistoryAttacks(t *testing.T) {
	l, firstMapLeaf := historyLog(t)
	tree := l.Tree()
	honest := func() transparency.HistoryProof { return l.HistoryProof("alice", transparency.Chain, 0, 0) }
	bob := l.HistoryProof("bob", transparency.Chain, 0, 0)
	carol := l.HistoryProof("carol", transparency.Chain, 0, 0)

	// A log whose last map leaf commits to a map that is not the log's.
	liar := transparencytest.NewLog(t, origin)
	liar.Append(transparencytest.ChainLink("alice", 0, "alice-phone"), transparencytest.ChainLink("alice", 1, "alice-laptop"))
	liar.Seal()
	wrongRoot := liar.HistoryProof("alice", transparency.Chain, 0, 0)
	liar.SealRoot([32]byte{1})
	wrongRoot.MapLeaf, wrongRoot.MapLeafProof = liar.Leaf(liar.Size()-1), liar.RecordProof(liar.Size()-1)
	liarTree := liar.Tree()

	tests := []struct {
		name   string
		tree   func() tlog.Tree
		proof  func() transparency.HistoryProof
		user   string
		known  transparency.HistoryState
		errHas string
	}{
		{"hidden entry", nil, func() transparency.HistoryProof {
			p := honest()
			p.Count, p.Entries = 1, p.Entries[:1]
			return p
		}, "alice", transparency.HistoryState{}, "do not fold to the value the map"},
		{"added entry", nil, func() transparency.HistoryProof {
			p := honest()
			p.Count++
			p.Entries = append(p.Entries, transparency.HistoryEntry{Index: 5, Leaf: transparencytest.ChainLink("alice", 2, "mallory")})
			return p
		}, "alice", transparency.HistoryState{}, "do not fold"},
		{"changed entry", nil, func() transparency.HistoryProof {
			p := honest()
			p.Entries[1].Leaf = transparencytest.ChainLink("alice", 1, "mallory")
			return p
		}, "alice", transparency.HistoryState{}, "do not fold"},
		{"entry of another user", nil, func() transparency.HistoryProof {
			p := honest()
			p.Entries[1] = bob.Entries[0]
			p.Entries[1].Index = 5
			return p
		}, "alice", transparency.HistoryState{}, `belongs to user "bob" history "chain"`},
		{"entries out of order", nil, func() transparency.HistoryProof {
			p := honest()
			p.Entries[0], p.Entries[1] = p.Entries[1], p.Entries[0]
			return p
		}, "alice", transparency.HistoryState{}, "not after"},
		{"history claimed empty", nil, func() transparency.HistoryProof {
			p := honest()
			p.Count, p.Entries = 0, nil
			return p
		}, "alice", transparency.HistoryState{}, "does not prove the history empty"},
		{"another label's lookup", nil, func() transparency.HistoryProof {
			p := honest()
			p.Lookup = bob.Lookup
			return p
		}, "alice", transparency.HistoryState{}, "do not fold"},
		{"non-membership of another label", nil, func() transparency.HistoryProof {
			p := honest()
			p.Count, p.Entries, p.Lookup = 0, nil, carol.Lookup
			return p
		}, "alice", transparency.HistoryState{}, "does not prove the history empty"},
		{"history shrank", nil, func() transparency.HistoryProof {
			p := honest()
			p.After = 3
			p.Entries = nil
			return p
		}, "alice", transparency.HistoryState{Count: 3}, "fewer than the 3 already seen"},
		{"entries from elsewhere", nil, honest, "alice", transparency.HistoryState{Count: 1}, "not after the 1 already seen"},
		{"wrong known value", nil, func() transparency.HistoryProof {
			return l.HistoryProof("alice", transparency.Chain, 0, 1)
		}, "alice", transparency.HistoryState{Count: 1, Value: [32]byte{9}}, "do not fold"},
		{"proof for another user", nil, func() transparency.HistoryProof { return bob }, "alice", transparency.HistoryState{}, "the proof is for user bob"},
		{"map leaf not the last leaf", nil, func() transparency.HistoryProof {
			p := honest()
			p.MapLeaf, p.MapLeafProof = l.Leaf(firstMapLeaf), l.RecordProof(firstMapLeaf)
			return p
		}, "alice", transparency.HistoryState{}, "not the last leaf"},
		{"wrong map root", func() tlog.Tree { return liarTree }, func() transparency.HistoryProof { return wrongRoot }, "alice", transparency.HistoryState{}, "do not fold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := tree
			if tt.tree != nil {
				tr = tt.tree()
			}
			_, err := transparency.VerifyHistory(tr, tt.proof(), tt.user, transparency.Chain, tt.known)
			if !errors.Is(err, transparency.ErrProof) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("VerifyHistory: %v, want ErrProof containing %q", err, tt.errHas)
			}
			if !strings.Contains(err.Error(), "user "+tt.user+" history chain") {
				t.Errorf("VerifyHistory: %v, want it to name the user and history", err)
			}
		})
	}
}

// TestVerifyHistoryLastLeaf: the tree's last leaf must be a map leaf of
// the right size.
func TestVerifyHistoryLastLeaf(t *testing.T) {
	for _, tt := range []struct {
		name   string
		last   []byte
		errHas string
	}{
		{"not a map leaf", transparencytest.ChainLink("alice", 2, "alice-tablet"), "not a map leaf"},
		{"map leaf of another size", transparency.MapLeaf{Size: 1}.Marshal(), "says size 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := historyLog(t)
			p := l.HistoryProof("alice", transparency.Chain, 0, 0)
			i := l.Append(tt.last)
			p.MapLeaf, p.MapLeafProof = tt.last, l.RecordProof(i)
			_, err := transparency.VerifyHistory(l.Tree(), p, "alice", transparency.Chain, transparency.HistoryState{})
			if !errors.Is(err, transparency.ErrProof) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("VerifyHistory: %v, want ErrProof containing %q", err, tt.errHas)
			}
		})
	}
}

// TestVerifyHistoryEmpty: an empty history is proven in maps of zero, one
// and two labels, whichever side of the root its label falls on (a map
// whose root has an empty child gives a one-node proof for the labels on
// that side), and no such proof shows a history that exists as empty.
func TestVerifyHistoryEmpty(t *testing.T) {
	for _, users := range [][]string{nil, {"alice"}, {"alice", "bob"}} {
		l := transparencytest.NewLog(t, origin)
		for _, u := range users {
			l.Append(transparencytest.ChainLink(u, 0, u+"-phone"))
		}
		l.Seal()
		tree := l.Tree()
		oneNode := 0
		for i := range 32 {
			user := fmt.Sprintf("nobody-%d", i)
			p := l.HistoryProof(user, transparency.Chain, 0, 0)
			if len(p.Lookup) == 1 {
				oneNode++
			}
			if got, err := transparency.VerifyHistory(tree, p, user, transparency.Chain, transparency.HistoryState{}); err != nil || got.Count != 0 {
				t.Fatalf("%d users: VerifyHistory(%s) = %+v, %v", len(users), user, got, err)
			}
			for _, u := range users {
				p.User = u
				if _, err := transparency.VerifyHistory(tree, p, u, transparency.Chain, transparency.HistoryState{}); !errors.Is(err, transparency.ErrProof) {
					t.Fatalf("%d users: %s's lookup shows %s's history empty: %v", len(users), user, u, err)
				}
			}
		}
		if len(users) == 1 && oneNode == 0 {
			t.Errorf("no lookup in a one-label map fell on the root's empty side")
		}
	}
}

// TestTrustVerify: the Trust methods check the proof's checkpoint against
// the trusted one before the leaf or history: once a client trusts one
// branch of a split view, the other is a fork.
func TestTrustVerify(t *testing.T) {
	l, _ := historyLog(t)
	tr, _ := openTrust(t, l)
	if _, err := tr.Advance(l.TreeProof(0)); err != nil {
		t.Fatal(err)
	}
	fork := l.Fork()
	link := transparencytest.ChainLink("alice", 2, "alice-tablet")
	i := l.Append(link)
	l.Seal()
	fork.Append(transparencytest.ChainLink("alice", 2, "mallory"))
	fork.Seal()
	from := tr.Tree().N

	if err := tr.VerifyLeaf(l.LeafProof(i, from), link); err != nil {
		t.Fatalf("VerifyLeaf: %v", err)
	}
	if tr.Tree() != l.Tree() {
		t.Fatalf("VerifyLeaf did not advance the trust")
	}
	if err := tr.VerifyLeaf(fork.LeafProof(i, tr.Tree().N), link); !errors.Is(err, transparency.ErrFork) {
		t.Fatalf("VerifyLeaf on a fork: %v, want ErrFork", err)
	}
	if _, err := tr.VerifyHistory(fork.HistoryProof("alice", transparency.Chain, tr.Tree().N, 0), "alice", transparency.Chain, transparency.HistoryState{}); !errors.Is(err, transparency.ErrFork) {
		t.Fatalf("VerifyHistory on a fork: %v, want ErrFork", err)
	}
	st, err := tr.VerifyHistory(l.HistoryProof("alice", transparency.Chain, l.Size(), 0), "alice", transparency.Chain, transparency.HistoryState{})
	if err != nil || st.Count != 3 {
		t.Fatalf("VerifyHistory = %+v, %v", st, err)
	}
}

// roundTrip returns p after its way over the wire.
func roundTrip[P any](t *testing.T, p P) P {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var out P
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestVerifyHistoryPages: a history longer than one answer (the server
// sends at most a page of entries) is read page by page; each page but
// the last gives ErrMoreEntries and a state that is not verified yet, and
// the last verifies every page at once. A page the server altered fails
// at the last page.
func TestVerifyHistoryPages(t *testing.T) {
	l := transparencytest.NewLog(t, origin, "witness.example/w1")
	chain := [][]byte{transparencytest.ChainLink("alice", 0, "k0"), transparencytest.ChainLink("alice", 1, "k1"), transparencytest.ChainLink("alice", 2, "k2")}
	l.Append(chain...)
	l.Seal()
	tree := l.Tree()
	page := func(after int64, n int) transparency.HistoryProof {
		p := l.HistoryProof("alice", transparency.Chain, 0, after)
		p.Entries = p.Entries[:n]
		return p
	}
	full, err := transparency.VerifyHistory(tree, l.HistoryProof("alice", transparency.Chain, 0, 0), "alice", transparency.Chain, transparency.HistoryState{})
	if err != nil {
		t.Fatal(err)
	}

	st := transparency.HistoryState{}
	for _, n := range []int{1, 1} {
		st, err = transparency.VerifyHistory(tree, roundTrip(t, page(st.Count, n)), "alice", transparency.Chain, st)
		if !errors.Is(err, transparency.ErrMoreEntries) {
			t.Fatalf("page of %d entries: %v, want ErrMoreEntries", n, err)
		}
	}
	if st.Count != 2 {
		t.Fatalf("after two pages of one entry the state counts %d", st.Count)
	}
	st, err = transparency.VerifyHistory(tree, page(2, 1), "alice", transparency.Chain, st)
	if err != nil || st != full {
		t.Fatalf("last page: %+v, %v, want %+v", st, err, full)
	}

	// A first page with a link the log does not hold: accepted as a page,
	// refused at the last one.
	forged := page(0, 2)
	forged.Entries[1].Leaf = transparencytest.ChainLink("alice", 1, "mallory")
	st, err = transparency.VerifyHistory(tree, forged, "alice", transparency.Chain, transparency.HistoryState{})
	if !errors.Is(err, transparency.ErrMoreEntries) {
		t.Fatalf("forged page: %v", err)
	}
	if _, err := transparency.VerifyHistory(tree, page(2, 1), "alice", transparency.Chain, st); !errors.Is(err, transparency.ErrProof) {
		t.Fatalf("last page after a forged one: %v, want ErrProof", err)
	}

	// Entries held back while the count is kept: a page, never a pass
	// (the hidden entry is in the next page or the history fails).
	if _, err := transparency.VerifyHistory(tree, page(0, 2), "alice", transparency.Chain, transparency.HistoryState{}); !errors.Is(err, transparency.ErrMoreEntries) {
		t.Fatalf("entries held back: %v, want ErrMoreEntries", err)
	}
	// A page without entries makes no progress: refused, not a loop.
	if _, err := transparency.VerifyHistory(tree, page(0, 0), "alice", transparency.Chain, transparency.HistoryState{}); !errors.Is(err, transparency.ErrProof) {
		t.Fatalf("empty page: %v, want ErrProof", err)
	}
	// More entries than the history holds after After.
	tooMany := l.HistoryProof("alice", transparency.Chain, 0, 1)
	tooMany.Entries = append(tooMany.Entries, tooMany.Entries[0])
	if _, err := transparency.VerifyHistory(tree, tooMany, "alice", transparency.Chain, transparency.HistoryState{Count: 1, Value: transparency.NextValue([32]byte{}, chain[0])}); !errors.Is(err, transparency.ErrProof) {
		t.Fatalf("too many entries: %v, want ErrProof", err)
	}
}
