package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestPartiesDoc keeps docs/parties.md true: every code block in it is
// quoted, line for line, from the script under testdata/parties that the
// comment before it names (the scripts TestParties runs), or is marked
// <!-- usage -->; and its metadata-sha256 test vectors are what
// statement.MetadataDigest computes, over metadata the API accepts.
func TestPartiesDoc(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "parties.md"))
	if err != nil {
		t.Fatal(err)
	}
	blockRE := regexp.MustCompile("(?s)(?:<!-- ([^>]*?) -->\n)?```[a-z]*\n(.*?)```")
	blocks := blockRE.FindAllStringSubmatch(string(doc), -1)
	quoted := 0
	for i, m := range blocks {
		source, body := m[1], m[2]
		switch {
		case source == "usage":
			continue
		case !strings.HasPrefix(source, "testdata/parties/"):
			t.Errorf("code block %d (%.40q…) names no script under testdata/parties/ (a <!-- testdata/parties/FILE --> line before it)", i+1, body)
			continue
		}
		script, err := os.ReadFile(filepath.Join(root, source))
		if err != nil {
			t.Errorf("code block %d: %v", i+1, err)
			continue
		}
		if !containsLines(string(script), body) {
			t.Errorf("code block %d is not in %s, line for line:\n%s", i+1, source, body)
		}
		quoted++
	}
	if quoted < 20 {
		t.Errorf("only %d code blocks quoted from the scripts; the parser is broken", quoted)
	}

	// The metadata-sha256 vectors: | `public` | private | `digest` |.
	rowRE := regexp.MustCompile("(?m)^\\| (`\\{.*\\}`|the same) \\| (none|the 3 octets `abc`) \\| `([0-9a-f]{64})` \\|$")
	rows := rowRE.FindAllStringSubmatch(string(doc), -1)
	if len(rows) != 2 {
		t.Fatalf("found %d metadata-sha256 vectors, want 2", len(rows))
	}
	var public []byte
	for _, r := range rows {
		if r[1] != "the same" {
			public = []byte(strings.Trim(r[1], "`"))
		}
		var private []byte
		if r[2] != "none" {
			private = []byte("abc")
		}
		want, _ := hex.DecodeString(r[3])
		got := statement.MetadataDigest(public, private)
		if !bytes.Equal(got[:], want) {
			t.Errorf("metadata-sha256(%s, %q) = %x, the doc says %s", public, private, got, r[3])
		}
	}
	// The API takes the vector's metadata: strict JSON, known members only.
	if err := api.CheckJSON(public); err != nil {
		t.Errorf("vector metadata: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(public))
	dec.DisallowUnknownFields()
	var m api.Metadata
	if err := dec.Decode(&m); err != nil || m.ContentType == "" {
		t.Errorf("vector metadata %s is not what the API accepts: %v", public, err)
	}
}

// containsLines reports whether the lines of block appear in text as
// consecutive lines, each compared without its leading and trailing space.
func containsLines(text, block string) bool {
	trim := func(s string) []string {
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimSpace(l)
		}
		return lines
	}
	want, have := trim(block), trim(text)
	for i := 0; i+len(want) <= len(have); i++ {
		match := true
		for j, w := range want {
			if have[i+j] != w {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
