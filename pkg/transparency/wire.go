package transparency

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"filippo.io/torchwood/prefix"
)

// The JSON answers of the log's proof routes. Hashes are base64 ([]byte in
// encoding/json). Every answer is relative to one checkpoint, which comes
// with it, and to the tree size the reader already trusts (From), so that a
// reader checks the new checkpoint and the proof in one round trip.

// A TreeProof is a checkpoint and the consistency proof from the tree size
// the reader trusts (the route's ?from=) to the checkpoint's size.
type TreeProof struct {
	// Checkpoint is the signed note: the log's signature and the
	// witnesses' cosignatures.
	Checkpoint string `json:"checkpoint"`
	// From is the size Consistency starts at; 0 when the reader trusts no
	// tree yet (or the same size) and Consistency is empty.
	From        int64    `json:"from"`
	Consistency [][]byte `json:"consistency"`
}

// A LeafProof proves that a leaf is in the log: GET /v1/log/leaves/{hash}
// where hash is the hex RFC 6962 record hash of the leaf.
type LeafProof struct {
	TreeProof
	Index int64    `json:"index"`
	Proof [][]byte `json:"proof"`
}

// A HistoryProof is one user's history in the map, at the checkpoint:
// GET /v1/log/users/{id}/{chain|decisions}?from=SIZE&after=COUNT.
type HistoryProof struct {
	TreeProof
	User    string  `json:"user"`
	History History `json:"history"`
	// MapLeaf is the tree's last leaf (a MapLeaf) and MapLeafProof its
	// inclusion proof in the checkpoint's tree.
	MapLeaf      []byte   `json:"map_leaf"`
	MapLeafProof [][]byte `json:"map_leaf_proof"`
	// Lookup proves the label's value in the map (membership when Count >
	// 0, non-membership when the history is empty).
	Lookup []MapNode `json:"lookup"`
	// Count is how many leaves the history holds; Entries are the ones
	// from After on, in log order.
	Count   int64          `json:"count"`
	After   int64          `json:"after"`
	Entries []HistoryEntry `json:"entries"`
}

// A HistoryEntry is a leaf of a user's history and its index in the log.
type HistoryEntry struct {
	Index int64  `json:"index"`
	Leaf  []byte `json:"leaf"`
}

// A MapNode is one node of a prefix tree proof.
type MapNode struct {
	Bits  uint32   `json:"bits"`
	Label [32]byte `json:"-"`
	Hash  [32]byte `json:"-"`
}

type mapNodeJSON struct {
	Bits  uint32 `json:"bits"`
	Label string `json:"label"`
	Hash  string `json:"hash"`
}

// MarshalJSON writes the label and hash in hex.
func (n MapNode) MarshalJSON() ([]byte, error) {
	return json.Marshal(mapNodeJSON{n.Bits, hex.EncodeToString(n.Label[:]), hex.EncodeToString(n.Hash[:])})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (n *MapNode) UnmarshalJSON(b []byte) error {
	var j mapNodeJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	l, err1 := hex.DecodeString(j.Label)
	h, err2 := hex.DecodeString(j.Hash)
	if err1 != nil || err2 != nil || len(l) != 32 || len(h) != 32 || j.Bits > 256 {
		return fmt.Errorf("%w map proof node", ErrFormat)
	}
	n.Bits = j.Bits
	copy(n.Label[:], l)
	copy(n.Hash[:], h)
	return nil
}

// MapNodes converts a prefix tree proof to its wire form.
func MapNodes(p []prefix.ProofNode) []MapNode {
	out := make([]MapNode, len(p))
	for i, n := range p {
		out[i].Bits = n.Label.BitLen()
		copy(out[i].Label[:], n.Label.Bytes())
		out[i].Hash = n.Hash
	}
	return out
}

// ProofNodes converts a wire proof back to the prefix tree's form.
func ProofNodes(p []MapNode) ([]prefix.ProofNode, error) {
	out := make([]prefix.ProofNode, len(p))
	for i, n := range p {
		l, err := prefix.NewLabel(n.Bits, n.Label[:])
		if err != nil {
			return nil, fmt.Errorf("%w map proof node %d: %v", ErrFormat, i, err)
		}
		out[i] = prefix.ProofNode{Label: l, Hash: n.Hash}
	}
	return out, nil
}
