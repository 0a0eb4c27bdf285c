package transparency

import (
	"bytes"
	"errors"
	"testing"
)

func TestLeafRoundTrip(t *testing.T) {
	stmt := []byte("keyholder-approval-v2\nrecord: 3f2a\ntime: 2026-11-27T03:04:05Z\n")
	for _, sig := range [][]byte{nil, {0xc2, 0x01, 0x02}} {
		leaf := Leaf(stmt, sig)
		gotStmt, gotSig, err := SplitLeaf(leaf)
		if err != nil || !bytes.Equal(gotStmt, stmt) || !bytes.Equal(gotSig, sig) {
			t.Errorf("SplitLeaf(Leaf(stmt, %x)) = %q, %x, %v", sig, gotStmt, gotSig, err)
		}
	}
	if got := string(Leaf(stmt, []byte{1, 2, 3})); got != string(stmt)+"\n— keyholder AQID\n" {
		t.Errorf("Leaf = %q", got)
	}
}

func TestSplitLeafRefuses(t *testing.T) {
	for name, leaf := range map[string]string{
		"empty":              "",
		"no final newline":   "keyholder-grant-v1\nrecord: x",
		"bad base64":         "a\n\n— keyholder !!!\n",
		"padding missing":    "a\n\n— keyholder AQI\n",
		"empty signature":    "a\n\n— keyholder \n",
		"blank line, no sig": "a\n\nb\n",
		"blank in statement": "a\n\nb\n\n— keyholder AQID\n",
		"no blank line":      "a\n— keyholder AQID\n",
	} {
		if _, _, err := SplitLeaf([]byte(leaf)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: SplitLeaf(%q) = %v, want ErrFormat", name, leaf, err)
		}
	}
}

func TestMapLeaf(t *testing.T) {
	m := MapLeaf{Size: 1234, Root: [32]byte{1, 2, 3}}
	b := m.Marshal()
	want := "keyholder-map-v1\nsize: 1234\nroot: 0102030000000000000000000000000000000000000000000000000000000000\n"
	if string(b) != want {
		t.Fatalf("Marshal = %q", b)
	}
	if got, err := ParseMapLeaf(b); err != nil || got != m {
		t.Fatalf("ParseMapLeaf = %v, %v", got, err)
	}
	for _, bad := range []string{
		"", want[:len(want)-1], want + "x\n",
		"keyholder-map-v1\nsize: 01\nroot: 0102030000000000000000000000000000000000000000000000000000000000\n",
		"keyholder-map-v1\nsize: -1\nroot: 0102030000000000000000000000000000000000000000000000000000000000\n",
		"keyholder-map-v1\nsize: 1\nroot: 0102030000000000000000000000000000000000000000000000000000000000AB\n",
		"keyholder-map-v1\nsize: 1\nroot: 0102030000000000000000000000000000000000000000000000000000000000\n"[:80] + "\n",
		"keyholder-map-v1\nsize: 1\nroot: 0102030000000000000000000000000000000000000000000000000000000ABC\n",
	} {
		if _, err := ParseMapLeaf([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseMapLeaf(%q) = %v, want ErrFormat", bad, err)
		}
	}
}

func TestValuesAndLabels(t *testing.T) {
	if Label(Chain, "u1") == Label(Decisions, "u1") || Label(Chain, "u1") == Label(Chain, "u2") {
		t.Fatal("labels collide")
	}
	var zero [32]byte
	a := NextValue(zero, []byte("leaf a\n"))
	ab := NextValue(a, []byte("leaf b\n"))
	ba := NextValue(NextValue(zero, []byte("leaf b\n")), []byte("leaf a\n"))
	if a == zero || ab == ba {
		t.Fatal("history values must depend on every leaf and their order")
	}
}
