package transparency

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/tlog"
)

// bigTree is a tree of n leaves that all hash alike except leaf special,
// so that proofs in trees of millions of leaves cost O(log n) to build.
type bigTree struct {
	special int64
	leaf    tlog.Hash
	same    []tlog.Hash // same[l] is the hash of a full subtree of 2^l ordinary leaves
	memo    map[int64]tlog.Hash
}

func newBigTree(special int64, leaf []byte) *bigTree {
	b := &bigTree{special: special, leaf: tlog.RecordHash(leaf), memo: map[int64]tlog.Hash{}}
	b.same = []tlog.Hash{tlog.RecordHash([]byte("ordinary leaf\n"))}
	for l := 1; l < 64; l++ {
		b.same = append(b.same, tlog.NodeHash(b.same[l-1], b.same[l-1]))
	}
	return b
}

func (b *bigTree) hash(level int, n int64) tlog.Hash {
	if n != b.special>>level {
		return b.same[level]
	}
	if level == 0 {
		return b.leaf
	}
	k := tlog.StoredHashIndex(level, n)
	if h, ok := b.memo[k]; ok {
		return h
	}
	h := tlog.NodeHash(b.hash(level-1, 2*n), b.hash(level-1, 2*n+1))
	b.memo[k] = h
	return h
}

func (b *bigTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = b.hash(tlog.SplitStoredHashIndex(x))
	}
	return out, nil
}

func (b *bigTree) tree(t testing.TB, n int64) tlog.Tree {
	h, err := tlog.TreeHash(n, b)
	if err != nil {
		t.Fatal(err)
	}
	return tlog.Tree{N: n, Hash: h}
}

var sizes = []int64{1 << 20, 10 << 20}

func BenchmarkVerifyLeaf(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dMi", n>>20), func(b *testing.B) {
			leaf := []byte("the leaf\n")
			bt := newBigTree(n/3, leaf)
			tree := bt.tree(b, n)
			proof, err := tlog.ProveRecord(n, n/3, bt)
			if err != nil {
				b.Fatal(err)
			}
			p := LeafProof{Index: n / 3, Proof: wireHashes(proof)}
			for b.Loop() {
				if err := VerifyLeaf(tree, p, leaf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckConsistency(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dMi", n>>20), func(b *testing.B) {
			bt := newBigTree(n-1, []byte("the leaf\n"))
			old, next := bt.tree(b, n/2+1), bt.tree(b, n)
			proof, err := tlog.ProveTree(n, old.N, bt)
			if err != nil {
				b.Fatal(err)
			}
			p := TreeProof{From: old.N, Consistency: wireHashes(proof)}
			for b.Loop() {
				if err := checkConsistency(old, next, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyHistory checks a history of 3 entries in a tree of n
// leaves whose map holds 100,000 histories, and reports the bytes of the
// JSON proof a device downloads (with its checkpoint, not counted here:
// about 300 bytes with two witnesses).
func BenchmarkVerifyHistory(b *testing.B) {
	ctx := context.Background()
	s := prefix.NewMemoryStorage()
	if err := prefix.InitStorage(ctx, MapHash, s); err != nil {
		b.Fatal(err)
	}
	m := prefix.NewTree(MapHash, s)
	for i := range 100_000 {
		if err := m.Insert(ctx, Label(Chain, fmt.Sprint("user", i)), [32]byte{1}); err != nil {
			b.Fatal(err)
		}
	}
	var entries []HistoryEntry
	var value [32]byte
	for i := range 3 {
		leaf := []byte(fmt.Sprintf("keyholder-chain-reset-v1\nuser: alice\nepoch: %d\ntime: 2026-11-27T03:04:05Z\n", i+1))
		entries = append(entries, HistoryEntry{Index: int64(i * 1000), Leaf: leaf})
		value = NextValue(value, leaf)
	}
	if err := m.Insert(ctx, Label(Chain, "alice"), value); err != nil {
		b.Fatal(err)
	}
	_, lookup, err := m.Lookup(ctx, Label(Chain, "alice"))
	if err != nil {
		b.Fatal(err)
	}
	root, err := m.RootHash(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("%dMi", n>>20), func(b *testing.B) {
			mapLeaf := MapLeaf{Size: n - 1, Root: root}.Marshal()
			bt := newBigTree(n-1, mapLeaf)
			tree := bt.tree(b, n)
			proof, err := tlog.ProveRecord(n, n-1, bt)
			if err != nil {
				b.Fatal(err)
			}
			p := HistoryProof{User: "alice", History: Chain, MapLeaf: mapLeaf, MapLeafProof: wireHashes(proof),
				Lookup: MapNodes(lookup), Count: 3, Entries: entries}
			j, err := json.Marshal(p)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := VerifyHistory(tree, p, "alice", Chain, HistoryState{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(j)), "proof-bytes")
		})
	}
}

func wireHashes(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}
