package sim

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	os.WriteFile(path, []byte(`{
		"default": {"submissions": "ask", "reads": "refuse"},
		"parties": {
			"Acme Lab": {"submissions": "approve", "reads": "grant", "read_minutes": 60},
			"0123456789ABCDEF0123456789ABCDEF01234567": {"submissions": "reject"}
		}
	}`), 0o600)
	p, err := loadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, fpr, sub, reads string
	}{
		{"Acme Lab", "FFFF", approve, grant},
		{"Other", "0123456789ABCDEF0123456789ABCDEF01234567", reject, refuse}, // fingerprint wins, reads from default
		{"Stranger", "EEEE", askUser, refuse},
	} {
		r := p.rule(c.name, c.fpr)
		if r.Submissions != c.sub || r.Reads != c.reads {
			t.Errorf("%s: got %+v", c.name, r)
		}
	}
	if p.rule("Acme Lab", "").grantExpiry().IsZero() {
		t.Error("read_minutes ignored")
	}
	os.WriteFile(path, []byte(`{"default": {"submissions": "maybe"}}`), 0o600)
	if _, err := loadPolicy(path); err == nil {
		t.Error("bad decision accepted")
	}
}

func TestPins(t *testing.T) {
	dir := t.TempDir()
	p, err := loadPins(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.check("Acme", "AAAA"); err != nil {
		t.Fatal(err)
	}
	p2, _ := loadPins(dir)
	if err := p2.check("Acme", "AAAA"); err != nil {
		t.Fatal(err)
	}
	if err := p2.check("Acme", "BBBB"); err == nil {
		t.Fatal("a changed party key was accepted")
	}
	if fi, _ := os.Stat(filepath.Join(dir, partiesFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("pins file mode %v", fi.Mode().Perm())
	}
}
