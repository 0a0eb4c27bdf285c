package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type failingReader struct{ after string }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after == "" {
		return 0, errors.New("reader broke")
	}
	n := copy(p, f.after)
	f.after = f.after[n:]
	return n, nil
}

// entries lists dir, to catch a temporary file left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.asc")
	for _, tc := range []struct {
		content string
		mode    os.FileMode
	}{
		{"first", 0o600},
		{"second, longer than the first", 0o644},
		{"", 0o600},
	} {
		n, err := Write(path, strings.NewReader(tc.content), tc.mode)
		if err != nil || n != int64(len(tc.content)) {
			t.Fatalf("Write(%q) = %d, %v", tc.content, n, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.content {
			t.Fatalf("read back %q, %v; want %q", got, err, tc.content)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != tc.mode {
			t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.mode)
		}
		if names := entries(t, dir); len(names) != 1 {
			t.Fatalf("directory holds %v, want only key.asc", names)
		}
	}
}

// TestWriteFailureKeepsTheOldFile: a reader that fails midway leaves the
// old content in place and no temporary file behind.
func TestWriteFailureKeepsTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "record.txt")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := Write(path, &failingReader{after: "partial new content"}, 0o600)
	if err == nil || err.Error() != "reader broke" {
		t.Fatalf("Write = %d, %v; want the reader's error", n, err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("path holds %q after a failed write, want the old content", got)
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v after a failed write", names)
	}
}

func TestWriteMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "f")
	if _, err := Write(path, strings.NewReader("x"), 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Write into a missing directory: %v", err)
	}
}

func TestWriteRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := Write("plain", io.LimitReader(strings.NewReader("abc"), 2), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile("plain"); string(got) != "ab" {
		t.Fatalf("read back %q", got)
	}
}
