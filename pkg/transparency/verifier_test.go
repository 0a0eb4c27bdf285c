package transparency_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

const origin = "keyholder.example.com/log"

// newLog returns a sealed log with a few leaves and two witnesses.
func newLog(t *testing.T) *transparencytest.Log {
	l := transparencytest.NewLog(t, origin, "witness.example/w1", "witness.example/w2")
	l.Append(transparencytest.ChainLink("alice", 0, "alice-phone"))
	l.Seal()
	return l
}

// corrupt flips a bit of the signature of the line by name.
func corrupt(t *testing.T, signed []byte, name string) []byte {
	prefix := []byte("— " + name + " ")
	var out [][]byte
	for _, line := range bytes.Split(signed, []byte("\n")) {
		if b64, ok := bytes.CutPrefix(line, prefix); ok {
			sig, err := base64.StdEncoding.DecodeString(string(b64))
			if err != nil {
				t.Fatal(err)
			}
			sig[len(sig)-1] ^= 1
			line = append(append([]byte(nil), prefix...), base64.StdEncoding.EncodeToString(sig)...)
		}
		out = append(out, line)
	}
	return bytes.Join(out, []byte("\n"))
}

func TestVerifierVerify(t *testing.T) {
	l := newLog(t)
	w1, w2 := l.Witnesses[0], l.Witnesses[1]
	stranger := transparencytest.NewWitness(t, "witness.example/w2") // w2's name, another key
	forger, _ := transparencytest.NewSigner(t, origin)
	tree := l.Tree()
	all := l.Sign(origin, tree)
	onlyW1 := l.Sign(origin, tree, l.LogSigner, w1)
	twiceW1 := append(append([]byte(nil), onlyW1...), onlyW1[bytes.LastIndex(onlyW1[:len(onlyW1)-1], []byte("\n"))+1:]...)

	tests := []struct {
		name   string
		quorum int
		signed []byte
		errHas string // "" for success
	}{
		{"log and every witness", 0, all, ""},
		{"quorum of one", 1, onlyW1, ""},
		{"default quorum is every witness", 0, onlyW1, "checkpoint has 1 of 2 required witness cosignatures (missing witness.example/w2)"},
		{"missing quorum", 2, onlyW1, "checkpoint has 1 of 2 required witness cosignatures (missing witness.example/w2)"},
		{"no witness", 1, l.Sign(origin, tree, l.LogSigner), "checkpoint has 0 of 1 required witness cosignatures (missing witness.example/w1, witness.example/w2)"},
		{"unknown witness key under a configured name", 2, l.Sign(origin, tree, l.LogSigner, w1, stranger), "missing witness.example/w2"},
		{"one witness cosigning twice", 2, twiceW1, "1 of 2 required"},
		{"no log signature", 2, l.Sign(origin, tree, w1, w2), "not signed by the log key " + origin},
		{"log signature by another key", 2, l.Sign(origin, tree, forger, w1, w2), "not signed by the log key " + origin},
		{"forged log signature", 2, corrupt(t, all, origin), "the signature by " + origin + " does not verify"},
		{"forged cosignature", 2, corrupt(t, all, "witness.example/w1"), "the signature by witness.example/w1 does not verify"},
		{"wrong origin", 2, l.Sign("evil.example/log", tree), `origin "evil.example/log", want "` + origin + `"`},
		{"not a note", 2, []byte("hello\n"), "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := l.Verifier(tt.quorum).Verify(tt.signed)
			if tt.errHas == "" {
				if err != nil || c.Tree != tree || c.Origin != origin {
					t.Fatalf("Verify = %+v, %v, want the tree %+v", c, err, tree)
				}
				return
			}
			if !errors.Is(err, transparency.ErrCheckpoint) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Verify: %v, want ErrCheckpoint containing %q", err, tt.errHas)
			}
		})
	}
}

func TestNewVerifier(t *testing.T) {
	l := newLog(t)
	keys := l.WitnessKeys()
	tests := []struct {
		name      string
		origin    string
		logKey    string
		witnesses []string
		quorum    int
		errHas    string
	}{
		{"ok", origin, l.LogKey, keys, 2, ""},
		{"no witnesses", origin, l.LogKey, nil, 0, ""},
		{"quorum above witnesses", origin, l.LogKey, keys, 3, "quorum 3"},
		{"negative quorum", origin, l.LogKey, keys, -1, "quorum -1"},
		{"witness twice", origin, l.LogKey, []string{keys[0], keys[0]}, 0, "configured twice"},
		{"witness named as the log", origin, l.LogKey, []string{transparencytest.NewWitness(t, origin).Verifier().String()}, 0, "configured twice"},
		{"bad log key", origin, "nope", keys, 0, "log key"},
		{"bad witness key", origin, l.LogKey, []string{"nope"}, 0, "witness key"},
		{"empty origin", "", l.LogKey, keys, 0, "origin"},
		{"two-line origin", "a\nb", l.LogKey, keys, 0, "origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transparency.NewVerifier(tt.origin, tt.logKey, tt.witnesses, tt.quorum)
			if tt.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("NewVerifier: %v, want an error containing %q", err, tt.errHas)
			}
		})
	}
}

// rename returns a verifier key with the key of vkey under another name
// (the key hash recomputed as signed-note does): the cosignature/v1
// message does not include the name, so the key's signatures verify
// under either.
func rename(t *testing.T, vkey, name string, alg byte) string {
	t.Helper()
	parts := strings.SplitN(vkey, "+", 3)
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	key[0] = alg
	h := sha256.Sum256(append([]byte(name+"\n"), key...))
	return fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(h[:4]), base64.StdEncoding.EncodeToString(key))
}

// TestNewVerifierOneKeyTwice: a quorum counts witnesses, not names. One
// witness key configured under two names would let the server copy one
// cosignature line under the second name and reach a quorum of two with
// one witness; the log key configured as a witness would let the log
// cosign itself. NewVerifier refuses both.
func TestNewVerifierOneKeyTwice(t *testing.T) {
	l := newLog(t)
	w1 := l.WitnessKeys()[0]
	for _, tt := range []struct {
		name      string
		witnesses []string
	}{
		{"a witness under two names", []string{w1, rename(t, w1, "witness.example/alias", 0x04)}},
		{"a witness as Ed25519 and cosignature key", []string{w1, rename(t, w1, "witness.example/alias", 0x01)}},
		{"the log key as a witness", []string{w1, rename(t, l.LogKey, "witness.example/log", 0x04)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := transparency.NewVerifier(origin, l.LogKey, tt.witnesses, 2); err == nil || !strings.Contains(err.Error(), "public key is configured twice") {
				t.Fatalf("NewVerifier: %v, want an error naming the key configured twice", err)
			}
		})
	}
}

// TestCosignedAt: the time by which the quorum had cosigned is the
// quorum-th newest cosignature's.
func TestCosignedAt(t *testing.T) {
	l := newLog(t)
	signed := l.Sign(origin, l.Tree())
	before := time.Now().Add(-time.Minute)
	for _, quorum := range []int{1, 2} {
		at, err := l.Verifier(quorum).CosignedAt(signed)
		if err != nil || at.Before(before) || at.After(time.Now().Add(time.Minute)) {
			t.Fatalf("CosignedAt with a quorum of %d = %v, %v; want about now", quorum, at, err)
		}
	}
	onlyW1 := l.Sign(origin, l.Tree(), l.LogSigner, l.Witnesses[0])
	if _, err := l.Verifier(2).CosignedAt(onlyW1); !errors.Is(err, transparency.ErrCheckpoint) {
		t.Fatalf("CosignedAt without the quorum: %v", err)
	}
	noWitness, err := transparency.NewVerifier(origin, l.LogKey, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noWitness.CosignedAt(signed); !errors.Is(err, transparency.ErrCheckpoint) {
		t.Fatalf("CosignedAt without witnesses: %v", err)
	}
}
