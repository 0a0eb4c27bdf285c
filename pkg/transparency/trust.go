package transparency

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

var (
	// ErrFork is wrapped by the error of a checkpoint whose tree is not
	// an extension of the trusted one: the same size with another hash,
	// or a consistency proof that does not verify. The log showed two
	// different histories; the error names both tree heads.
	ErrFork = errors.New("transparency: log fork")
	// ErrRollback is wrapped by the error of a checkpoint of a smaller
	// tree than the trusted one; the error names both tree heads.
	ErrRollback = errors.New("transparency: log rollback")
	// ErrProof is wrapped by the errors of proofs that do not verify.
	ErrProof = errors.New("transparency: proof does not verify")
)

// head formats a tree head as errors name it: size and base64 hash.
func head(t tlog.Tree) string { return fmt.Sprintf("size %d hash %s", t.N, t.Hash) }

// A Trust is the last checkpoint a client trusted, kept in a file. It
// moves only forward, to checkpoints proven consistent with it. It is safe
// for concurrent use within a process; two processes must not share the
// file.
type Trust struct {
	v    *Verifier
	path string

	mu         sync.Mutex
	tree       tlog.Tree
	checkpoint []byte
}

// OpenTrust reads the trusted checkpoint from the file at path, if there
// is one (a Trust without one trusts the empty tree and accepts any
// checkpoint v verifies). The stored checkpoint must still carry the log's
// signature and origin; its witness cosignatures are not checked again,
// so that a client whose witness set changed keeps its history.
func OpenTrust(path string, v *Verifier) (*Trust, error) {
	t := &Trust{v: v, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("transparency: trusted checkpoint: %w", err)
	}
	c, err := v.verifyLogSignature(b)
	if err != nil {
		return nil, fmt.Errorf("transparency: trusted checkpoint %s: %w", path, err)
	}
	t.tree, t.checkpoint = c.Tree, b
	return t, nil
}

// Tree returns the trusted tree (size 0 when none is trusted yet).
func (t *Trust) Tree() tlog.Tree {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tree
}

// Checkpoint returns the trusted signed checkpoint, nil when none is.
func (t *Trust) Checkpoint() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.checkpoint
}

// Advance verifies p's checkpoint and its consistency with the trusted
// tree, makes it the trusted one (written to the file before Advance
// returns) and returns its tree. A checkpoint of the trusted tree changes
// nothing. A smaller tree is ErrRollback, the same size with another hash
// or a consistency proof that fails is ErrFork, and a proof from another
// size than the trusted one is ErrProof (ask again with ?from= the trusted
// size). Callers that fetch proofs concurrently may race one another's
// Advance: fetch and advance under one lock of their own to keep an honest
// but stale answer from looking like a rollback.
func (t *Trust) Advance(p TreeProof) (tlog.Tree, error) {
	c, err := t.v.Verify([]byte(p.Checkpoint))
	if err != nil {
		return tlog.Tree{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := checkConsistency(t.tree, c.Tree, p); err != nil {
		return tlog.Tree{}, err
	}
	if c.Tree == t.tree {
		return t.tree, nil
	}
	if err := writeFileSync(t.path, []byte(p.Checkpoint)); err != nil {
		return tlog.Tree{}, fmt.Errorf("transparency: saving the trusted checkpoint: %w", err)
	}
	t.tree, t.checkpoint = c.Tree, []byte(p.Checkpoint)
	return c.Tree, nil
}

// checkConsistency checks that next, the tree of p's checkpoint, extends
// old as p's consistency proof shows.
func checkConsistency(old, next tlog.Tree, p TreeProof) error {
	switch {
	case old.N == 0:
		// Nothing trusted yet (or the empty tree, which every tree
		// extends).
		return nil
	case next.N < old.N:
		return fmt.Errorf("%w: checkpoint of %s is older than the trusted checkpoint of %s", ErrRollback, head(next), head(old))
	case next.N == old.N && next.Hash != old.Hash:
		return fmt.Errorf("%w: checkpoint of %s differs from the trusted checkpoint of %s", ErrFork, head(next), head(old))
	case next == old:
		return nil
	case p.From != old.N:
		return fmt.Errorf("%w: consistency proof from size %d, the trusted size is %d", ErrProof, p.From, old.N)
	}
	proof, err := proofHashes(p.Consistency)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(proof, next.N, next.Hash, old.N, old.Hash); err != nil {
		return fmt.Errorf("%w: checkpoint of %s is not proven consistent with the trusted checkpoint of %s: %v", ErrFork, head(next), head(old), err)
	}
	return nil
}

// proofHashes converts a proof's wire hashes.
func proofHashes(p [][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(p))
	for i, h := range p {
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("%w proof: hash %d is %d bytes, not %d", ErrFormat, i, len(h), tlog.HashSize)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

// writeFileSync replaces the file at path with b so that a crash leaves
// either the old or the new content: a temporary file in the same
// directory, synced, renamed over path, and the directory synced.
func writeFileSync(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
