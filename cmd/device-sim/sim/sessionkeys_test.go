package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func skID(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func hexID(s string) string { id := skID(s); return hex.EncodeToString(id[:]) }

// openIndex loads the session key index of the device home dir.
func openIndex(t *testing.T, dir string) *sessionKeys {
	t.Helper()
	s, err := loadSessionKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantRecords checks that s maps each id (by name) to its record, "" for
// unknown.
func wantRecords(t *testing.T, s *sessionKeys, want map[string]string) {
	t.Helper()
	for name, rec := range want {
		got, err := s.Record(skID(name))
		if err != nil || got != rec {
			t.Errorf("Record(%s) = %q, %v; want %q", name, got, err, rec)
		}
	}
}

func remember(t *testing.T, s *sessionKeys, name, record string) {
	t.Helper()
	if err := s.Remember(skID(name), record); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, data string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSessionKeysReload(t *testing.T) {
	dir := t.TempDir()
	s := openIndex(t, dir)
	wantRecords(t, s, map[string]string{"x": ""})
	remember(t, s, "x", rid("x"))
	remember(t, s, "y", rid("y"))
	want := map[string]string{"x": rid("x"), "y": rid("y"), "z": ""}
	wantRecords(t, s, want)
	wantRecords(t, openIndex(t, dir), want)
	st, err := os.Stat(filepath.Join(dir, sessionKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("index file mode %v, want 0600", st.Mode().Perm())
	}
}

// The first record remembered for a session key wins, in memory and on
// disk, whether the second Remember comes before or after a reload.
func TestSessionKeysFirstWins(t *testing.T) {
	dir := t.TempDir()
	s := openIndex(t, dir)
	remember(t, s, "x", rid("x"))
	remember(t, s, "x", rid("other"))
	want := map[string]string{"x": rid("x")}
	wantRecords(t, s, want)
	s = openIndex(t, dir)
	wantRecords(t, s, want)
	remember(t, s, "x", rid("third"))
	wantRecords(t, s, want)
	wantRecords(t, openIndex(t, dir), want)
	// Even in a file written by another process that appended a second
	// line for the same key, the first line wins.
	appendFile(t, filepath.Join(dir, sessionKeysFile), hexID("x")+" rec-appended\n")
	wantRecords(t, openIndex(t, dir), want)
}

// A line torn by a crash while it was appended, and blank lines, are
// skipped without losing the entries before them, and a torn line never
// yields another record id than the one being written: whatever prefix of
// the line reached the disk, the key is unknown or maps to its whole
// record.
func TestSessionKeysTornLine(t *testing.T) {
	line := "\n" + hexID("torn") + " " + rid("torn") + "\n"
	var wrong []string
	for cut := 1; cut < len(line); cut++ {
		dir := t.TempDir()
		s := openIndex(t, dir)
		remember(t, s, "x", rid("x"))
		remember(t, s, "y", rid("y"))
		path := filepath.Join(dir, sessionKeysFile)
		appendFile(t, path, "\n\n")
		appendFile(t, path, line[:cut])

		s = openIndex(t, dir)
		wantRecords(t, s, map[string]string{"x": rid("x"), "y": rid("y")})
		if got, _ := s.Record(skID("torn")); got != "" && got != rid("torn") {
			wrong = append(wrong, got)
		}
		// The next entry lands on a line of its own.
		remember(t, s, "z", rid("z"))
		wantRecords(t, openIndex(t, dir), map[string]string{"x": rid("x"), "y": rid("y"), "z": rid("z")})
	}
	if len(wrong) > 0 {
		t.Errorf("a torn line maps its session key to a record id it did not finish writing: %q", wrong)
	}
}

// Other damage (a line that is not "<hex id> <record>") is skipped too.
func TestSessionKeysGarbage(t *testing.T) {
	dir := t.TempDir()
	s := openIndex(t, dir)
	remember(t, s, "x", rid("x"))
	path := filepath.Join(dir, sessionKeysFile)
	for _, line := range []string{
		"garbage\n",
		hexID("nohex")[:63] + "g " + rid("nohex") + "\n",
		hexID("short")[:62] + " " + rid("short") + "\n",
		hexID("badrecord") + " rec-not-an-id\n",
		hexID("norecord") + " \n",
		hexID("nospace") + "\n",
		"\x00\x00\x00\x00\n",
	} {
		appendFile(t, path, line)
	}
	wantRecords(t, openIndex(t, dir), map[string]string{"x": rid("x"), "norecord": "", "nospace": ""})
}

// A record id is written into a line of the index: one that holds a line
// break must not add an entry for another session key.
func TestSessionKeysRecordIDInjection(t *testing.T) {
	dir := t.TempDir()
	s := openIndex(t, dir)
	injected := rid("a") + "\n" + hexID("victim") + " " + rid("attacker")
	if err := s.Remember(skID("a"), injected); err != nil {
		return // refused: nothing written
	}
	if got, _ := openIndex(t, dir).Record(skID("victim")); got != "" {
		t.Fatalf("Remember(a, %q) made the reloaded index map another session key to %q", injected, got)
	}
}

// rid is a record id (32 hex digits) named by name.
func rid(name string) string { return hexID(name)[:32] }
