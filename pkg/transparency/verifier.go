package transparency

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"filippo.io/torchwood"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ErrCheckpoint is wrapped by the errors of checkpoints a Verifier does not
// trust: malformed, another origin, not signed by the log key, or without
// the quorum of witness cosignatures.
var ErrCheckpoint = errors.New("transparency: checkpoint not trusted")

// A Verifier checks checkpoints: the log's signature, a quorum of witness
// cosignatures and the origin line. It is safe for concurrent use.
type Verifier struct {
	origin    string
	log       note.Verifier
	witnesses []note.Verifier
	quorum    int
	known     note.Verifiers
}

// NewVerifier returns a Verifier for the log named origin (the checkpoint's
// first line), whose checkpoints logKey signs (a signed-note Ed25519
// verifier key, name+hash+key) and whose witnesses have the cosignature/v1
// keys witnessKeys (vkeys as C2SP tlog-cosignature writes them). quorum is
// how many distinct witnesses must cosign; 0 means all of them. Witness
// names must be distinct from each other and from the log key's.
func NewVerifier(origin, logKey string, witnessKeys []string, quorum int) (*Verifier, error) {
	if origin == "" || strings.ContainsAny(origin, "\n") {
		return nil, fmt.Errorf("transparency: log origin %q is not one non-empty line", origin)
	}
	lv, err := note.NewVerifier(logKey)
	if err != nil {
		return nil, fmt.Errorf("transparency: log key %q: %v", logKey, err)
	}
	v := &Verifier{origin: origin, log: lv}
	names := map[string]bool{lv.Name(): true}
	keys := map[string]string{publicKey(logKey): lv.Name()}
	all := []note.Verifier{lv}
	for _, k := range witnessKeys {
		wv, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return nil, fmt.Errorf("transparency: witness key %q: %v", k, err)
		}
		if names[wv.Name()] {
			return nil, fmt.Errorf("transparency: witness key %q: the name %s is configured twice", k, wv.Name())
		}
		// A cosignature does not sign the witness's name: one key under
		// two names would count one witness twice toward the quorum, and
		// the log's key as a witness would let the log cosign itself.
		if other, ok := keys[publicKey(k)]; ok {
			return nil, fmt.Errorf("transparency: witness key %q: its public key is configured twice (also as %s)", k, other)
		}
		names[wv.Name()] = true
		keys[publicKey(k)] = wv.Name()
		v.witnesses = append(v.witnesses, wv)
		all = append(all, wv)
	}
	switch {
	case quorum < 0 || quorum > len(v.witnesses):
		return nil, fmt.Errorf("transparency: witness quorum %d is not between 0 and the %d witnesses configured", quorum, len(v.witnesses))
	case quorum == 0:
		quorum = len(v.witnesses)
	}
	v.quorum = quorum
	v.known = note.VerifierList(all...)
	return v, nil
}

// publicKey is the public key of a verifier key that note or fnote parsed
// (name+hash+base64 of an algorithm byte and the key), without the
// algorithm byte, which tells how the key signs, not whose key it is.
func publicKey(vkey string) string {
	parts := strings.SplitN(vkey, "+", 3)
	key, err := base64.StdEncoding.DecodeString(parts[len(parts)-1])
	if err != nil || len(key) < 2 {
		return vkey // unreachable for a parsed key; compares as itself
	}
	return string(key[1:])
}

// Origin returns the log's origin line.
func (v *Verifier) Origin() string { return v.origin }

// Witnesses is how many witnesses the verifier is configured with.
func (v *Verifier) Witnesses() int { return len(v.witnesses) }

// Verify checks a signed checkpoint and returns its body. The log's
// signature and cosignatures of at least the quorum of distinct configured
// witnesses are required; signatures by other keys are ignored, and a
// signature by a configured key that does not verify is an error. Cosignature
// timestamps are not checked: a witness's cosignature vouches that the tree
// is consistent with every other tree it cosigned, whenever it cosigned it.
func (v *Verifier) Verify(signed []byte) (torchwood.Checkpoint, error) {
	n, err := note.Open(signed, v.known)
	if err != nil {
		var invalid *note.InvalidSignatureError
		var unverified *note.UnverifiedNoteError
		switch {
		case errors.As(err, &invalid):
			return torchwood.Checkpoint{}, fmt.Errorf("%w: the signature by %s does not verify", ErrCheckpoint, invalid.Name)
		case errors.As(err, &unverified):
			return torchwood.Checkpoint{}, fmt.Errorf("%w: not signed by the log key %s", ErrCheckpoint, v.log.Name())
		}
		return torchwood.Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	sigs := map[string]bool{}
	for _, s := range n.Sigs {
		sigs[s.Name] = true
	}
	if !sigs[v.log.Name()] {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: not signed by the log key %s", ErrCheckpoint, v.log.Name())
	}
	var missing []string
	for _, w := range v.witnesses {
		if !sigs[w.Name()] {
			missing = append(missing, w.Name())
		}
	}
	if have := len(v.witnesses) - len(missing); have < v.quorum {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: checkpoint has %d of %d required witness cosignatures (missing %s)",
			ErrCheckpoint, have, v.quorum, strings.Join(missing, ", "))
	}
	return v.parse(n.Text)
}

// CosignedAt verifies a signed checkpoint (see Verify) and returns when
// its quorum had cosigned it: the quorum-th newest timestamp of the
// configured witnesses' cosignatures. A reader that wants to know it is
// not kept on an old checkpoint compares it with the time (keyholderd asks
// its witnesses again when the log is idle; see translog.Config.Refresh).
func (v *Verifier) CosignedAt(signed []byte) (time.Time, error) {
	if _, err := v.Verify(signed); err != nil {
		return time.Time{}, err
	}
	if len(v.witnesses) == 0 {
		return time.Time{}, fmt.Errorf("%w: no witnesses configured, so no cosignature time", ErrCheckpoint)
	}
	n, err := note.Open(signed, note.VerifierList(v.witnesses...))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return QuorumCosignedAt(n, v.quorum)
}

// QuorumCosignedAt returns when quorum witnesses had cosigned n, a note
// opened with the witnesses' verifiers: the quorum-th newest timestamp of
// its cosignatures (c2sp.org/tlog-cosignature: a 4-byte key hash, an
// 8-byte big-endian UNIX time, the signature), one per witness name.
func QuorumCosignedAt(n *note.Note, quorum int) (time.Time, error) {
	var times []time.Time
	seen := map[string]bool{}
	for _, s := range n.Sigs {
		b, err := base64.StdEncoding.DecodeString(s.Base64)
		if err != nil || len(b) < 12 {
			return time.Time{}, fmt.Errorf("%w: the cosignature by %s has no timestamp", ErrCheckpoint, s.Name)
		}
		if seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		ts := binary.BigEndian.Uint64(b[4:12])
		if ts > math.MaxInt64 {
			return time.Time{}, fmt.Errorf("%w: the cosignature by %s has timestamp %d", ErrCheckpoint, s.Name, ts)
		}
		times = append(times, time.Unix(int64(ts), 0).UTC())
	}
	if quorum < 1 || len(times) < quorum {
		return time.Time{}, fmt.Errorf("%w: %d witness cosignatures, the quorum is %d", ErrCheckpoint, len(times), quorum)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[quorum-1], nil
}

// verifyLogSignature checks a checkpoint's log signature and origin only.
func (v *Verifier) verifyLogSignature(signed []byte) (torchwood.Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(v.log))
	if err != nil {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: not signed by the log key %s: %v", ErrCheckpoint, v.log.Name(), err)
	}
	return v.parse(n.Text)
}

func (v *Verifier) parse(text string) (torchwood.Checkpoint, error) {
	c, err := torchwood.ParseCheckpoint(text)
	if err != nil {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if c.Origin != v.origin {
		return torchwood.Checkpoint{}, fmt.Errorf("%w: origin %q, want %q", ErrCheckpoint, c.Origin, v.origin)
	}
	return c, nil
}
