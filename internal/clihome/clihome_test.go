package clihome

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteFileModeAndReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	for _, data := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode())
		}
		if b, _ := os.ReadFile(p); string(b) != data {
			t.Fatalf("content %q", b)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestReadJSONMissing(t *testing.T) {
	var v map[string]string
	if err := ReadJSON(filepath.Join(t.TempDir(), "none.json"), &v); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}

func TestPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pass")
	os.WriteFile(f, []byte("a secret\r\n"), 0o600)
	p, err := Prompt{}.Read(context.Background(), f, true)
	if err != nil || string(p) != "a secret" {
		t.Fatalf("%q %v", p, err)
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := (Prompt{}).Read(context.Background(), f, false); err == nil {
		t.Fatal("empty passphrase file accepted")
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if _, err := (Prompt{In: r, NotTerminal: "no tty"}).Read(context.Background(), "", false); err == nil || err.Error() != "no tty" {
		t.Fatalf("not a terminal: %v", err)
	}
}

// A new passphrase (confirm) shorter than 8 characters is refused, with
// the file named; an existing key's passphrase is read whatever its length.
func TestPassphraseMinLength(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(f, []byte("pw\n"), 0o600)
	_, err := Prompt{}.Read(context.Background(), f, true)
	if err == nil || !strings.Contains(err.Error(), "the passphrase in "+f+" has 2 characters: a key passphrase needs at least 8") {
		t.Fatalf("short new passphrase: %v", err)
	}
	if p, err := (Prompt{}).Read(context.Background(), f, false); err != nil || string(p) != "pw" {
		t.Fatalf("unlocking with a short passphrase: %q %v", p, err)
	}
	// Characters, not bytes.
	os.WriteFile(f, []byte("äöüäöüä\n"), 0o600)
	if _, err := (Prompt{}).Read(context.Background(), f, true); err == nil {
		t.Fatal("7 characters (14 bytes) accepted")
	}
	os.WriteFile(f, []byte("äöüäöüäö\n"), 0o600)
	if _, err := (Prompt{}).Read(context.Background(), f, true); err != nil {
		t.Fatalf("8 characters: %v", err)
	}
}

// A signal (the end of ctx) while the terminal is asked for the passphrase
// ends the wait at once, and leaves the terminal echoing again.
func TestPassphrasePromptEndsWithContext(t *testing.T) {
	tty := openPTY(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Prompt{Label: "Key passphrase: ", In: tty, Out: io.Discard}.Read(ctx, "", false)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the passphrase prompt does not end with its context")
	}
	if !echoes(t, tty) {
		t.Fatal("the terminal was left without echo")
	}
}
