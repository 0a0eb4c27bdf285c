package sim

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A home that holds a device key but no enrollment (enroll reached the
// server, then failed to save device.json) keeps its key: a second enroll
// must not replace or delete it.
func TestEnrollKeepsAnExistingKey(t *testing.T) {
	home := t.TempDir()
	keyPath := filepath.Join(home, keyFile)
	if err := os.WriteFile(keyPath, []byte("the enrolled key"), 0o600); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pass, []byte("device secret\n"), 0o600)
	cmd := rootCmd()
	cmd.SetArgs([]string{"enroll", "--home", home, "--passphrase-file", pass, "--server", "http://127.0.0.1:1", "--code", "ABCD-EFGH"})
	if err := cmd.ExecuteContext(context.Background()); err == nil {
		t.Fatal("enroll over an existing key succeeded")
	}
	b, err := os.ReadFile(keyPath)
	if err != nil || string(b) != "the enrolled key" {
		t.Fatalf("the existing key is gone or replaced: %q %v", b, err)
	}
}
