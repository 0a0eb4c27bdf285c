package transparency

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyLeaf checks that leaf is at p.Index in the trusted tree (the one
// Trust.Advance returned for p.TreeProof).
func VerifyLeaf(tree tlog.Tree, p LeafProof, leaf []byte) error {
	if p.Index < 0 || p.Index >= tree.N {
		return fmt.Errorf("%w: leaf index %d is not in the tree of %s", ErrProof, p.Index, head(tree))
	}
	proof, err := proofHashes(p.Proof)
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, p.Index, tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("%w: the leaf is not at index %d of the tree of %s: %v", ErrProof, p.Index, head(tree), err)
	}
	return nil
}

// ErrMoreEntries is returned by VerifyHistory for a proof that holds only
// the first of the history's new entries (the server sends at most a page
// per answer; see HistoryProof). The state returned with it folds the
// page but is not verified: pass it as known to VerifyHistory with the
// proof of the entries after it (?after=state.Count), and trust none of
// the pages' entries until a call returns no error. That call checks the
// fold of every page against its map, so a page the server altered fails
// there, whichever checkpoint each page came with.
var ErrMoreEntries = errors.New("transparency: more history entries to read")

// A HistoryState is what a reader knows of one user history: how many
// leaves it holds and the value they fold to (see NextValue). The zero
// HistoryState is the empty history.
type HistoryState struct {
	Count int64
	Value [32]byte
}

// VerifyHistory checks p, the history h of user in the trusted tree (the
// one Trust.Advance returned for p.TreeProof), against known, what the
// reader knew of the history before, and returns the new state. It checks
// that p.MapLeaf is the tree's last leaf and commits to the map of the
// leaves before it, that the entries from known.Count on fold from
// known.Value to the value the map holds for the history (or that the map
// holds nothing for it, when the history is empty), and that every entry
// belongs to the history. A leaf of the history left out of the entries,
// one added, or one changed fails with ErrProof; p.Entries are then the
// new leaves of the history, in log order. A proof of only the first new
// entries (one page) gives ErrMoreEntries and a state to continue from.
func VerifyHistory(tree tlog.Tree, p HistoryProof, user string, h History, known HistoryState) (HistoryState, error) {
	fail := func(format string, args ...any) (HistoryState, error) {
		return HistoryState{}, fmt.Errorf("%w: user %s history %s: %s", ErrProof, user, h, fmt.Sprintf(format, args...))
	}
	if p.User != user || p.History != h {
		return fail("the proof is for user %s history %s", p.User, p.History)
	}
	if tree.N < 1 {
		return fail("the tree is empty")
	}
	mapProof, err := proofHashes(p.MapLeafProof)
	if err != nil {
		return HistoryState{}, err
	}
	if err := tlog.CheckRecord(mapProof, tree.N, tree.Hash, tree.N-1, tlog.RecordHash(p.MapLeaf)); err != nil {
		return fail("the map leaf is not the last leaf (index %d) of the tree of %s: %v", tree.N-1, head(tree), err)
	}
	m, err := ParseMapLeaf(p.MapLeaf)
	if err != nil {
		return fail("the tree's last leaf is not a map leaf: %v", err)
	}
	if m.Size != tree.N-1 {
		return fail("the map leaf at index %d says size %d", tree.N-1, m.Size)
	}
	switch {
	case p.Count < known.Count:
		return fail("the log holds %d entries, fewer than the %d already seen", p.Count, known.Count)
	case p.After != known.Count:
		return fail("entries start after %d, not after the %d already seen", p.After, known.Count)
	case int64(len(p.Entries)) > p.Count-p.After:
		return fail("%d entries served for entries %d to %d", len(p.Entries), p.After, p.Count-1)
	case len(p.Entries) == 0 && p.Count > p.After:
		return fail("no entries served for entries %d to %d", p.After, p.Count-1)
	}
	value, last := known.Value, int64(-1)
	for i, e := range p.Entries {
		if e.Index <= last || e.Index >= m.Size {
			return fail("entry %d has index %d, not after %d and before the map leaf at %d", p.After+int64(i), e.Index, last, m.Size)
		}
		last = e.Index
		// A grant names its record, not its user: it is taken to be of
		// this user here and checked against the map's value like any
		// other entry (a monitor checks the record's binding).
		a, err := Attribute(e.Leaf, func(string) (string, error) { return user, nil })
		if err != nil {
			return fail("entry %d (log index %d): %v", p.After+int64(i), e.Index, err)
		}
		if a.User != user || a.History != h {
			return fail("entry %d (log index %d) belongs to user %q history %q", p.After+int64(i), e.Index, a.User, a.History)
		}
		value = NextValue(value, e.Leaf)
	}
	if read := p.After + int64(len(p.Entries)); read < p.Count {
		return HistoryState{Count: read, Value: value}, fmt.Errorf("%w: user %s history %s: read %d of %d entries, continue after %d",
			ErrMoreEntries, user, h, read, p.Count, read)
	}
	lookup, err := ProofNodes(p.Lookup)
	if err != nil {
		return HistoryState{}, err
	}
	label := Label(h, user)
	if p.Count == 0 {
		if err := verifyNonMembership(label, lookup, m.Root); err != nil {
			return fail("the map of the tree of %s does not prove the history empty: %v", head(tree), err)
		}
		return HistoryState{}, nil
	}
	if err := prefix.VerifyMembershipProof(MapHash, label, value, lookup, m.Root); err != nil {
		return fail("the %d entries do not fold to the value the map of the tree of %s holds (an entry hidden, added or changed): %v",
			p.Count, head(tree), err)
	}
	return HistoryState{Count: p.Count, Value: value}, nil
}

// verifyNonMembership is prefix.VerifyNonMembershipProof, completed for
// the proof prefix.Tree.Lookup returns when the root has one empty child
// and the label is on that side: the one non-empty child, without the
// empty node (torchwood v0.6.1 to v0.10.0 then refuses the proof as
// shorter than two nodes). The empty node is put back; the proof then
// shows a root whose children are that node, which the label does not
// extend, and nothing.
func verifyNonMembership(label [32]byte, proof []prefix.ProofNode, root [32]byte) error {
	if empty := emptyNode(); len(proof) == 1 && proof[0] != empty {
		proof = []prefix.ProofNode{proof[0], empty}
	}
	return prefix.VerifyNonMembershipProof(MapHash, label, proof, root)
}

// emptyNode is the empty node of the map, as the lookup in an empty map
// returns it.
var emptyNode = sync.OnceValue(func() prefix.ProofNode {
	ctx := context.Background()
	s := prefix.NewMemoryStorage()
	if err := prefix.InitStorage(ctx, MapHash, s); err != nil {
		panic(err)
	}
	_, proof, err := prefix.NewTree(MapHash, s).Lookup(ctx, [32]byte{})
	if err != nil || len(proof) != 1 || proof[0].Label != prefix.EmptyNodeLabel {
		panic(fmt.Sprintf("transparency: the empty map's lookup is %v, %v", proof, err))
	}
	return proof[0]
})

// VerifyLeaf advances t to p's checkpoint (see Advance) and checks that
// leaf is at p.Index in its tree.
func (t *Trust) VerifyLeaf(p LeafProof, leaf []byte) error {
	tree, err := t.Advance(p.TreeProof)
	if err != nil {
		return err
	}
	return VerifyLeaf(tree, p, leaf)
}

// VerifyHistory advances t to p's checkpoint (see Advance) and checks the
// history in its tree (see the function VerifyHistory).
func (t *Trust) VerifyHistory(p HistoryProof, user string, h History, known HistoryState) (HistoryState, error) {
	tree, err := t.Advance(p.TreeProof)
	if err != nil {
		return HistoryState{}, err
	}
	return VerifyHistory(tree, p, user, h, known)
}
