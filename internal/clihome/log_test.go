package clihome

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/keyholder/keyholder/internal/witnesstest"
)

func TestLogSettings(t *testing.T) {
	_, logKey, err := note.GenerateKey(rand.Reader, "keyholder.test/log")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	witness := witnesstest.VKey("witness.test/w1", pub)
	for _, tc := range []struct {
		name string
		s    LogSettings
		bad  string
	}{
		{"log key only", LogSettings{Key: logKey}, ""},
		{"one witness", LogSettings{Key: logKey, Witnesses: []string{witness}, Quorum: 1}, ""},
		{"not a key", LogSettings{Key: "keyholder.test/log"}, "log key"},
		{"a witness key as the log key", LogSettings{Key: witness}, "log key"},
		{"quorum above the witnesses", LogSettings{Key: logKey, Witnesses: []string{witness}, Quorum: 2}, "quorum"},
		{"the log key as a witness", LogSettings{Key: logKey, Witnesses: []string{logKey}}, "witness key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.s.Verifier()
			switch {
			case tc.bad == "" && (err != nil || v.Origin() != "keyholder.test/log"):
				t.Fatalf("%v", err)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Fatalf("got %v, want an error about %s", err, tc.bad)
			}
		})
	}

	home := t.TempDir()
	var stderr bytes.Buffer
	opts, err := LogOptions(home, "keyholder", true, &stderr)
	if err != nil || opts != nil || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "not checked") {
		t.Fatalf("without settings: %v %v %q", opts, err, stderr.String())
	}
	if err := WriteJSON(filepath.Join(home, LogFile), LogSettings{Key: logKey}); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	opts, err = LogOptions(home, "keyholder", true, &stderr)
	if err != nil || len(opts) != 2 || stderr.Len() != 0 {
		t.Fatalf("with settings: %d options, %v %q", len(opts), err, stderr.String())
	}
	// A trusted checkpoint that is not the log's: refused, not replaced.
	os.WriteFile(filepath.Join(home, LogCheckpointFile), []byte("forged\n"), 0o600)
	if _, err := LogOptions(home, "keyholder", false, &stderr); err == nil {
		t.Fatal("a corrupt trusted checkpoint was accepted")
	}
}
