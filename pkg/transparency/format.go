// Package transparency holds the formats of Keyholder's public log and
// checks what a log server says against them.
//
// The log is a C2SP tlog-tiles log (RFC 6962 hashing, tiles of height 8,
// checkpoints in the tlog-checkpoint format signed with a signed-note key
// and cosigned by tlog-witness witnesses). Its leaves are the canonical
// signed texts of pkg/statement with their signatures (see [Leaf]) and,
// after every batch, one map leaf (see [MapLeaf]) that commits to a map
// from user to the history of that user's key chain and decisions. The
// Merkle math and proofs come from golang.org/x/mod/sumdb/tlog and the map
// from filippo.io/torchwood/prefix; this package only fixes the bytes.
//
// Why a map leaf rather than a checkpoint extension line: witnesses check
// that trees grow append-only, not what extension lines say, so two
// checkpoints of one tree could carry two map roots and be cosigned both.
// As the last leaf of every checkpointed tree the map root is fixed by the
// tree hash itself: one tree, one map, for every reader.
package transparency

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/statement"
)

// ErrFormat is wrapped by every error about bytes that are not in the
// log's format.
var ErrFormat = errors.New("transparency: malformed")

// sigPrefix starts the signature line of a signed leaf, after an empty
// line, as in a signed note (statements never hold an empty line).
const sigPrefix = "\n— keyholder "

// Leaf returns the log leaf of a statement and its binary OpenPGP
// signature: the statement, an empty line, and "— keyholder " followed by
// the base64 signature and a newline. A leaf the server writes itself
// (revocation, chain reset) has no signature: Leaf(text, nil) is text.
func Leaf(statement, signature []byte) []byte {
	if len(signature) == 0 {
		return append([]byte(nil), statement...)
	}
	out := make([]byte, 0, len(statement)+len(sigPrefix)+base64.StdEncoding.EncodedLen(len(signature))+1)
	out = append(out, statement...)
	out = append(out, sigPrefix...)
	out = base64.StdEncoding.AppendEncode(out, signature)
	return append(out, '\n')
}

// SignedLeaf is Leaf with the signature as the API carries it, armored or
// binary: the leaf always holds the binary packet (statement.BinarySignature),
// so that every reader derives the same leaf from the same signature.
func SignedLeaf(stmt, signature []byte) ([]byte, error) {
	bin, err := statement.BinarySignature(signature)
	if err != nil {
		return nil, err
	}
	return Leaf(stmt, bin), nil
}

// SplitLeaf is the inverse of [Leaf]: it returns the statement and the
// signature (nil for an unsigned leaf).
func SplitLeaf(leaf []byte) (statement, signature []byte, err error) {
	if len(leaf) == 0 || leaf[len(leaf)-1] != '\n' {
		return nil, nil, fmt.Errorf("%w leaf: does not end in a newline", ErrFormat)
	}
	i := bytes.LastIndex(leaf, []byte(sigPrefix))
	if i < 0 {
		if bytes.Contains(leaf, []byte("\n\n")) {
			return nil, nil, fmt.Errorf("%w leaf: empty line without a signature line", ErrFormat)
		}
		return leaf, nil, nil
	}
	statement = leaf[:i]
	b64 := leaf[i+len(sigPrefix) : len(leaf)-1]
	signature, err = base64.StdEncoding.Strict().DecodeString(string(b64))
	if err != nil || len(signature) == 0 || !bytes.HasSuffix(statement, []byte("\n")) || bytes.Contains(statement, []byte("\n\n")) {
		return nil, nil, fmt.Errorf("%w leaf: bad signature line", ErrFormat)
	}
	return statement, signature, nil
}

// MapLeafHeader is the first line of a map leaf.
const MapLeafHeader = "keyholder-map-v1"

// A MapLeaf is the last leaf of every tree the log signs: the root of the
// user map after the Size leaves before it.
type MapLeaf struct {
	Size int64
	Root [32]byte
}

// Marshal returns the canonical leaf:
//
//	keyholder-map-v1
//	size: 1234
//	root: <64 hex digits>
func (m MapLeaf) Marshal() []byte {
	return fmt.Appendf(nil, "%s\nsize: %d\nroot: %x\n", MapLeafHeader, m.Size, m.Root)
}

// ParseMapLeaf reads a canonical map leaf.
func ParseMapLeaf(b []byte) (MapLeaf, error) {
	var m MapLeaf
	lines := strings.Split(string(b), "\n")
	if len(lines) != 4 || lines[0] != MapLeafHeader || lines[3] != "" {
		return m, fmt.Errorf("%w map leaf: not three lines starting %q", ErrFormat, MapLeafHeader)
	}
	size, ok := strings.CutPrefix(lines[1], "size: ")
	n, err := strconv.ParseInt(size, 10, 64)
	if !ok || err != nil || n < 0 || strconv.FormatInt(n, 10) != size {
		return m, fmt.Errorf("%w map leaf: bad size line", ErrFormat)
	}
	root, ok := strings.CutPrefix(lines[2], "root: ")
	r, err := hex.DecodeString(root)
	if !ok || err != nil || len(r) != 32 || hex.EncodeToString(r) != root {
		return m, fmt.Errorf("%w map leaf: bad root line", ErrFormat)
	}
	m.Size = n
	copy(m.Root[:], r)
	return m, nil
}

// A History names one of the two histories the map keeps per user.
type History string

const (
	// Chain is the user's key chain: links and resets.
	Chain History = "chain"
	// Decisions are the approvals, rejections, grants and revocations
	// made in the user's name.
	Decisions History = "decisions"
)

// Label is the map key of a user's history.
func Label(h History, userID string) [32]byte {
	return sha256.Sum256([]byte("keyholder-map-label-v1\x00" + string(h) + "\x00" + userID))
}

// NextValue folds one more leaf into a history's value. The value of an
// empty history is all zeros; the map holds the value after the last leaf,
// so that a reader given the leaves can recompute it and a server cannot
// leave one out.
func NextValue(prev [32]byte, leaf []byte) [32]byte {
	rh := tlog.RecordHash(leaf)
	h := sha256.New()
	h.Write([]byte("keyholder-map-value-v1\x00"))
	h.Write(prev[:])
	h.Write(rh[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// MapHash is the hash function of the user map (a torchwood prefix tree).
func MapHash(b []byte) [32]byte { return sha256.Sum256(b) }
