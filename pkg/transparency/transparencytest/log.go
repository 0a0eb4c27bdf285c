package transparencytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"

	"filippo.io/torchwood"
	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/transparency"
)

// A Log is a Keyholder transparency log in memory, built as the server
// builds it: leaves appended, then sealed by a map leaf committing to the
// user map. It signs checkpoints with a fresh log key and cosigns them
// with fresh witness keys, serves proofs in the wire forms and the C2SP
// tlog-tiles read API (Handler), and can be told to lie. It is safe for
// concurrent use.
type Log struct {
	t      testing.TB
	Origin string
	// LogSigner signs checkpoints; LogKey is its verifier key.
	LogSigner note.Signer
	LogKey    string
	// Witnesses cosign checkpoints (cosignature/v1).
	Witnesses []*torchwood.CosignatureSigner

	mu       sync.Mutex
	leaves   [][]byte
	hashes   []tlog.Hash
	unmapped map[int64]bool // leaves the map does not fold (a lying server)
	mapped   int64          // leaves before this index are folded into the map
	m        *prefix.Tree
	records  map[string]string
	history  map[historyKey][]int64
	values   map[historyKey][32]byte
}

type historyKey struct {
	user string
	h    transparency.History
}

// NewLog returns an empty log named origin with one witness per name.
func NewLog(t testing.TB, origin string, witnesses ...string) *Log {
	t.Helper()
	signer, vkey := NewSigner(t, origin)
	l := &Log{t: t, Origin: origin, LogSigner: signer, LogKey: vkey, unmapped: map[int64]bool{},
		records: map[string]string{}, history: map[historyKey][]int64{}, values: map[historyKey][32]byte{}}
	for _, name := range witnesses {
		l.Witnesses = append(l.Witnesses, NewWitness(t, name))
	}
	s := prefix.NewMemoryStorage()
	if err := prefix.InitStorage(context.Background(), transparency.MapHash, s); err != nil {
		t.Fatal(err)
	}
	l.m = prefix.NewTree(transparency.MapHash, s)
	return l
}

// NewSigner returns a signed-note Ed25519 signer with a fresh key, and its
// verifier key.
func NewSigner(t testing.TB, name string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return signer, vkey
}

// NewWitness returns a cosigner with a fresh key.
func NewWitness(t testing.TB, name string) *torchwood.CosignatureSigner {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := torchwood.NewCosignatureSigner(name, key)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// WitnessKeys returns the witnesses' cosignature/v1 verifier keys.
func (l *Log) WitnessKeys() []string {
	var keys []string
	for _, w := range l.Witnesses {
		keys = append(keys, w.Verifier().String())
	}
	return keys
}

// Verifier returns a Verifier of the log with all its witnesses and the
// given quorum.
func (l *Log) Verifier(quorum int) *transparency.Verifier {
	l.t.Helper()
	v, err := transparency.NewVerifier(l.Origin, l.LogKey, l.WitnessKeys(), quorum)
	if err != nil {
		l.t.Fatal(err)
	}
	return v
}

// Append appends leaves and returns the index of the first.
func (l *Log) Append(leaves ...[]byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.append(false, leaves...)
}

// AppendUnmapped appends leaves that the next map leaf does not fold in:
// a server hiding them from the map.
func (l *Log) AppendUnmapped(leaves ...[]byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.append(true, leaves...)
}

func (l *Log) append(unmapped bool, leaves ...[]byte) int64 {
	first := int64(len(l.leaves))
	for _, leaf := range leaves {
		n := int64(len(l.leaves))
		hashes, err := tlog.StoredHashes(n, leaf, l.hashReader())
		if err != nil {
			l.t.Fatal(err)
		}
		l.hashes = append(l.hashes, hashes...)
		l.leaves = append(l.leaves, append([]byte(nil), leaf...))
		if unmapped {
			l.unmapped[n] = true
		}
	}
	return first
}

func (l *Log) hashReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

// Seal folds the leaves appended since the last seal into the map, as
// transparency.Attribute assigns them, and appends the map leaf. It
// returns the map leaf's index.
func (l *Log) Seal() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sealWith(l.fold())
}

// fold folds the leaves appended since the last seal into the map and
// returns its root.
func (l *Log) fold() [32]byte {
	ctx := context.Background()
	for i := l.mapped; i < int64(len(l.leaves)); i++ {
		if l.unmapped[i] {
			continue
		}
		a, err := transparency.Attribute(l.leaves[i], func(r string) (string, error) { return l.records[r], nil })
		if err != nil {
			l.t.Fatalf("leaf %d: %v", i, err)
		}
		if a.Record != "" {
			l.records[a.Record] = a.User
		}
		if a.History == "" {
			continue
		}
		k := historyKey{a.User, a.History}
		l.history[k] = append(l.history[k], i)
		l.values[k] = transparency.NextValue(l.values[k], l.leaves[i])
		if err := l.m.Insert(ctx, transparency.Label(a.History, a.User), l.values[k]); err != nil {
			l.t.Fatal(err)
		}
	}
	root, err := l.m.RootHash(ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	return root
}

// SealRoot is Seal with a map leaf holding root instead of the map's: a
// server committing to a map it did not build from the log. Proofs still
// come from the map.
func (l *Log) SealRoot(root [32]byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fold()
	return l.sealWith(root)
}

func (l *Log) sealWith(root [32]byte) int64 {
	n := int64(len(l.leaves))
	l.append(false, transparency.MapLeaf{Size: n, Root: root}.Marshal())
	l.mapped = n + 1
	return n
}

// Size returns the number of leaves.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.leaves))
}

// Leaf returns leaf i.
func (l *Log) Leaf(i int64) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leaves[i]
}

// Tree returns the current tree head.
func (l *Log) Tree() tlog.Tree {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree()
}

func (l *Log) tree() tlog.Tree {
	n := int64(len(l.leaves))
	h, err := tlog.TreeHash(n, l.hashReader())
	if err != nil {
		l.t.Fatal(err)
	}
	return tlog.Tree{N: n, Hash: h}
}

// Sign returns the signed checkpoint of tree under origin, signed by the
// given signers; with none, by the log key and every witness.
func (l *Log) Sign(origin string, tree tlog.Tree, signers ...note.Signer) []byte {
	l.t.Helper()
	if len(signers) == 0 {
		signers = append(signers, l.LogSigner)
		for _, w := range l.Witnesses {
			signers = append(signers, w)
		}
	}
	c := torchwood.Checkpoint{Origin: origin, Tree: tree}
	b, err := note.Sign(&note.Note{Text: c.String()}, signers...)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

// Checkpoint returns the checkpoint of the current tree, signed by the log
// and every witness.
func (l *Log) Checkpoint() []byte { return l.Sign(l.Origin, l.Tree()) }

// TreeProof returns the current checkpoint and the consistency proof from
// size from.
func (l *Log) TreeProof(from int64) transparency.TreeProof {
	l.mu.Lock()
	tree := l.tree()
	l.mu.Unlock()
	return l.TreeProofOf(l.Sign(l.Origin, tree), tree.N, from)
}

// TreeProofOf returns checkpoint with the consistency proof from size from
// to size n.
func (l *Log) TreeProofOf(checkpoint []byte, n, from int64) transparency.TreeProof {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := transparency.TreeProof{Checkpoint: string(checkpoint), From: from}
	if from > 0 && from < n {
		proof, err := tlog.ProveTree(n, from, l.hashReader())
		if err != nil {
			l.t.Fatal(err)
		}
		p.Consistency = wire(proof)
	}
	return p
}

// RecordProof returns the inclusion proof of leaf i in the current tree.
func (l *Log) RecordProof(i int64) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recordProof(i)
}

func (l *Log) recordProof(i int64) [][]byte {
	proof, err := tlog.ProveRecord(int64(len(l.leaves)), i, l.hashReader())
	if err != nil {
		l.t.Fatal(err)
	}
	return wire(proof)
}

func wire(p []tlog.Hash) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = append([]byte(nil), h[:]...)
	}
	return out
}

// LeafProof returns the proof of leaf i in the current tree for a reader
// that trusts size from.
func (l *Log) LeafProof(i, from int64) transparency.LeafProof {
	return transparency.LeafProof{TreeProof: l.TreeProof(from), Index: i, Proof: l.RecordProof(i)}
}

// HistoryProof returns history h of user in the current tree, which must
// end in a map leaf, for a reader that trusts size from and has seen after
// entries of the history.
func (l *Log) HistoryProof(user string, h transparency.History, from, after int64) transparency.HistoryProof {
	tp := l.TreeProof(from)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := int64(len(l.leaves))
	if l.mapped != n {
		l.t.Fatalf("HistoryProof: the log of %d leaves does not end in a map leaf", n)
	}
	found, lookup, err := l.m.Lookup(context.Background(), transparency.Label(h, user))
	if err != nil {
		l.t.Fatal(err)
	}
	idx := l.history[historyKey{user, h}]
	if found != (len(idx) > 0) {
		l.t.Fatalf("HistoryProof: map and history disagree for %s %s", user, h)
	}
	p := transparency.HistoryProof{TreeProof: tp, User: user, History: h,
		MapLeaf: l.leaves[n-1], MapLeafProof: l.recordProof(n - 1),
		Lookup: transparency.MapNodes(lookup), Count: int64(len(idx)), After: after}
	for _, i := range idx[min(after, int64(len(idx))):] {
		p.Entries = append(p.Entries, transparency.HistoryEntry{Index: i, Leaf: l.leaves[i]})
	}
	return p
}

// Handler serves the C2SP tlog-tiles read API of the current tree
// (checkpoint, tiles, entry bundles) at the root of its URL space.
func (l *Log) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/")
		if path == "checkpoint" {
			w.Write(l.Checkpoint())
			return
		}
		tile, err := torchwood.ParseTilePath(path)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		n := int64(len(l.leaves))
		if tile.L == -1 {
			start := tile.N * torchwood.TileWidth
			if start+int64(tile.W) > n {
				http.NotFound(w, r)
				return
			}
			var b []byte
			for _, leaf := range l.leaves[start : start+int64(tile.W)] {
				if b, err = torchwood.AppendTileEntry(b, leaf); err != nil {
					l.t.Error(err)
				}
			}
			w.Write(b)
			return
		}
		if !tileFits(tile, n) {
			http.NotFound(w, r)
			return
		}
		data, err := tlog.ReadTileData(tile, l.hashReader())
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	})
}

// tileFits reports whether the hash tile is within a tree of n leaves.
func tileFits(t tlog.Tile, n int64) bool {
	return (t.N*torchwood.TileWidth+int64(t.W))<<(uint(t.L)*uint(t.H)) <= n
}

// Fork returns a log with the same keys and the same leaves, sealed at the
// same places, which then grows on its own: the other half of a split
// view, signed by the same log key and witnesses.
func (l *Log) Fork() *Log {
	l.mu.Lock()
	leaves := append([][]byte(nil), l.leaves...)
	unmapped := maps.Clone(l.unmapped)
	l.mu.Unlock()
	f := NewLog(l.t, l.Origin)
	f.LogSigner, f.LogKey, f.Witnesses = l.LogSigner, l.LogKey, l.Witnesses
	for i, leaf := range leaves {
		if ml, err := transparency.ParseMapLeaf(leaf); err == nil {
			f.SealRoot(ml.Root)
			continue
		}
		if unmapped[int64(i)] {
			f.AppendUnmapped(leaf)
		} else {
			f.Append(leaf)
		}
	}
	return f
}
