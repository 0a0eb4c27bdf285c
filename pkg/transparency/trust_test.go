package transparency_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

func openTrust(t *testing.T, l *transparencytest.Log) (*transparency.Trust, string) {
	path := filepath.Join(t.TempDir(), "checkpoint")
	tr, err := transparency.OpenTrust(path, l.Verifier(0))
	if err != nil {
		t.Fatal(err)
	}
	return tr, path
}

func head(tree tlog.Tree) string { return fmt.Sprintf("size %d hash %s", tree.N, tree.Hash) }

func TestTrustAdvance(t *testing.T) {
	l := newLog(t)
	tr, path := openTrust(t, l)
	if got := tr.Tree(); got.N != 0 {
		t.Fatalf("new Trust trusts %+v", got)
	}
	empty := transparencytest.NewLog(t, origin)
	empty.LogSigner, empty.LogKey, empty.Witnesses = l.LogSigner, l.LogKey, l.Witnesses
	if got, err := tr.Advance(empty.TreeProof(0)); err != nil || got != empty.Tree() {
		t.Fatalf("Advance to the empty tree = %+v, %v", got, err)
	}
	first := l.Tree()
	if got, err := tr.Advance(l.TreeProof(0)); err != nil || got != first {
		t.Fatalf("Advance from nothing = %+v, %v", got, err)
	}
	l.Append(transparencytest.ChainLink("alice", 1, "alice-laptop"), transparencytest.Approval("r1", "alice"))
	l.Seal()
	second := l.Tree()
	p := l.TreeProof(first.N)
	if got, err := tr.Advance(p); err != nil || got != second {
		t.Fatalf("Advance = %+v, %v, want %+v", got, err, second)
	}
	if got, err := tr.Advance(p); err != nil || got != second {
		t.Fatalf("Advance to the trusted tree again = %+v, %v", got, err)
	}

	// The file holds the checkpoint, and nothing else is left behind.
	b, err := os.ReadFile(path)
	if err != nil || string(b) != p.Checkpoint || string(tr.Checkpoint()) != p.Checkpoint {
		t.Fatalf("file = %q, %v, want %q", b, err, p.Checkpoint)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("directory holds %d files, want only the checkpoint", len(entries))
	}
	reopened, err := transparency.OpenTrust(path, l.Verifier(0))
	if err != nil || reopened.Tree() != second {
		t.Fatalf("OpenTrust = %+v, %v, want %+v", reopened.Tree(), err, second)
	}
}

// TestTrustAttacks: a server that forks or rolls back the log, or sends a
// proof that does not hold, is refused, and the trusted tree stays.
func TestTrustAttacks(t *testing.T) {
	l := newLog(t)
	l.Append(transparencytest.ChainLink("alice", 1, "alice-laptop"))
	l.Seal()
	old := l.Tree()
	l.Append(transparencytest.Approval("r1", "alice"))
	l.Seal()
	trusted := l.Tree()

	// other is the same log with another history after old.N leaves:
	// signed by the same log and witnesses (a compromised log key and
	// colluding or fooled witnesses are what the client must survive).
	other := transparencytest.NewLog(t, origin)
	for i := range trusted.N {
		if i < old.N {
			other.Append(l.Leaf(i))
		}
	}
	other.Append(transparencytest.Approval("r1", "mallory"))
	other.Seal()
	sameSize := other.Tree()
	other.Append(transparencytest.ChainLink("alice", 2, "mallory-phone"))
	other.Seal()
	bigger := other.Tree()
	if sameSize.N != trusted.N {
		t.Fatalf("fork of size %d, want %d", sameSize.N, trusted.N)
	}

	l.Append(transparencytest.ChainLink("alice", 2, "alice-tablet"))
	l.Seal()
	next := l.Tree()
	good := l.TreeProof(trusted.N)
	tampered := good
	tampered.Consistency = append([][]byte(nil), good.Consistency...)
	tampered.Consistency[0] = append([]byte(nil), good.Consistency[0]...)
	tampered.Consistency[0][0] ^= 1
	short := good
	short.Consistency = [][]byte{good.Consistency[0][:31]}
	fromElsewhere := l.TreeProofOf([]byte(good.Checkpoint), next.N, old.N)
	unsigned := good
	unsigned.Checkpoint = string(l.Sign(origin, next, l.LogSigner))

	tests := []struct {
		name    string
		proof   transparency.TreeProof
		wantErr error
		errHas  []string
	}{
		{"fork at the same size", l.TreeProofOf(l.Sign(origin, sameSize), sameSize.N, trusted.N), transparency.ErrFork, []string{head(sameSize), head(trusted)}},
		{"fork at a bigger size", other.TreeProofOf(l.Sign(origin, bigger), bigger.N, trusted.N), transparency.ErrFork, []string{head(bigger), head(trusted)}},
		{"rollback", l.TreeProofOf(l.Sign(origin, old), old.N, 0), transparency.ErrRollback, []string{head(old), head(trusted)}},
		{"consistency proof that does not verify", tampered, transparency.ErrFork, []string{head(next), head(trusted)}},
		{"consistency proof hash of 31 bytes", short, transparency.ErrFormat, []string{"31 bytes"}},
		{"consistency proof from another size", fromElsewhere, transparency.ErrProof, []string{fmt.Sprintf("from size %d, the trusted size is %d", old.N, trusted.N)}},
		{"no consistency proof", l.TreeProofOf([]byte(good.Checkpoint), next.N, 0), transparency.ErrProof, []string{"from size 0"}},
		{"checkpoint without witnesses", unsigned, transparency.ErrCheckpoint, []string{"0 of 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, path := openTrust(t, l)
			if _, err := tr.Advance(l.TreeProofOf(l.Sign(origin, trusted), trusted.N, 0)); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			_, err := tr.Advance(tt.proof)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Advance: %v, want %v", err, tt.wantErr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Advance: %v, want it to name %q", err, s)
				}
			}
			after, _ := os.ReadFile(path)
			if tr.Tree() != trusted || string(after) != string(before) {
				t.Fatalf("the trusted tree moved to %+v", tr.Tree())
			}
		})
	}
	// The honest proof still works after all that.
	tr, _ := openTrust(t, l)
	tr.Advance(l.TreeProofOf(l.Sign(origin, trusted), trusted.N, 0))
	if got, err := tr.Advance(good); err != nil || got != next {
		t.Fatalf("honest Advance = %+v, %v", got, err)
	}
}

func TestOpenTrustRefusesAnotherLog(t *testing.T) {
	l, stranger := newLog(t), newLog(t)
	tr, path := openTrust(t, stranger)
	if _, err := tr.Advance(stranger.TreeProof(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := transparency.OpenTrust(path, l.Verifier(0)); !errors.Is(err, transparency.ErrCheckpoint) {
		t.Fatalf("OpenTrust of another log's checkpoint: %v, want ErrCheckpoint", err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := transparency.OpenTrust(path, l.Verifier(0)); !errors.Is(err, transparency.ErrCheckpoint) {
		t.Fatalf("OpenTrust of garbage: %v, want ErrCheckpoint", err)
	}
}

// TestTrustConcurrent: goroutines advancing one Trust through a growing
// log never see an error (run with -race).
func TestTrustConcurrent(t *testing.T) {
	l := newLog(t)
	tr, _ := openTrust(t, l)
	var proofs []transparency.TreeProof
	for i := range 8 {
		from := tr.Tree().N
		p := l.TreeProof(from)
		if _, err := tr.Advance(p); err != nil {
			t.Fatal(err)
		}
		proofs = append(proofs, p)
		l.Append(transparencytest.ChainLink("alice", int64(i+1), fmt.Sprint("key", i)))
		l.Seal()
	}
	tr2, _ := openTrust(t, l)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine applies the chain of proofs in order; an
			// Advance to a tree already passed by another goroutine is a
			// rollback, so only apply the ones from the current size.
			for _, p := range proofs {
				if tr2.Tree().N == p.From {
					if _, err := tr2.Advance(p); err != nil && !errors.Is(err, transparency.ErrRollback) && !errors.Is(err, transparency.ErrProof) {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if tr2.Tree() != tr.Tree() {
		t.Fatalf("concurrent Advance ended at %+v, want %+v", tr2.Tree(), tr.Tree())
	}
}

// TestTrustSaveFails: a checkpoint that cannot be saved is not trusted.
func TestTrustSaveFails(t *testing.T) {
	l := newLog(t)
	tr, err := transparency.OpenTrust(filepath.Join(t.TempDir(), "missing", "checkpoint"), l.Verifier(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Advance(l.TreeProof(0)); err == nil || !strings.Contains(err.Error(), "saving the trusted checkpoint") {
		t.Fatalf("Advance into a missing directory: %v", err)
	}
	if tr.Tree().N != 0 || tr.Checkpoint() != nil {
		t.Fatalf("the unsaved checkpoint is trusted: %+v", tr.Tree())
	}
}
