package clihome

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/pkg/keychain"
)

const testFpr = "0123456789ABCDEF0123456789ABCDEF01234567"

func TestPinsRoundTrip(t *testing.T) {
	p := Pins{Dir: filepath.Join(t.TempDir(), "pins")} // created by SetPin
	for _, pin := range []*keychain.Pin{
		{User: "alice", Genesis: testFpr, Seq: 3, Head: strings.Repeat("ab", 32)},
		{User: "alice", Genesis: testFpr, Seq: -1}, // re-pinned by hand
		{User: "Bob_2-x", Genesis: testFpr, Seq: 0, Head: strings.Repeat("cd", 32)},
	} {
		if err := p.SetPin(pin); err != nil {
			t.Fatal(err)
		}
		got, err := p.Pin(pin.User)
		if err != nil || !reflect.DeepEqual(got, pin) {
			t.Fatalf("Pin(%s) = %+v, %v; want %+v", pin.User, got, err, pin)
		}
		st, err := os.Stat(filepath.Join(p.Dir, pin.User+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("pin file mode %v, want 0600", st.Mode().Perm())
		}
	}
	if st, err := os.Stat(p.Dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("pin directory: %v %v", st.Mode(), err)
	}
	// Another user's pin is untouched by alice's.
	if got, err := p.Pin("Bob_2-x"); err != nil || got.Seq != 0 {
		t.Fatalf("bob's pin: %+v %v", got, err)
	}
}

func TestPinsMissing(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "none")} {
		if got, err := (Pins{Dir: dir}).Pin("alice"); got != nil || err != nil {
			t.Fatalf("Pin of an unpinned user = %+v, %v; want nil, nil", got, err)
		}
	}
}

func TestPinsRemove(t *testing.T) {
	p := Pins{Dir: t.TempDir()}
	if err := p.Remove("alice"); err != nil {
		t.Fatalf("Remove of a missing pin: %v", err)
	}
	if err := p.SetPin(&keychain.Pin{User: "alice", Genesis: testFpr, Seq: -1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := p.Remove("alice"); err != nil {
			t.Fatalf("Remove %d: %v", i, err)
		}
		if got, err := p.Pin("alice"); got != nil || err != nil {
			t.Fatalf("Pin after Remove = %+v, %v", got, err)
		}
	}
}

func TestPinsInvalidUser(t *testing.T) {
	dir := t.TempDir()
	p := Pins{Dir: filepath.Join(dir, "pins")}
	// A file the invalid ids would reach.
	if err := os.WriteFile(filepath.Join(dir, "x.json"), []byte(`{"user":"x","genesis":"`+testFpr+`","seq":-1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"../x", "", strings.Repeat("a", 65), "a/b", "a b", "a.json", ".", "..", "é", "a\x00"} {
		if _, err := p.Pin(user); err == nil {
			t.Errorf("Pin(%q) accepted", user)
		}
		if err := p.SetPin(&keychain.Pin{User: user, Genesis: testFpr, Seq: -1}); err == nil {
			t.Errorf("SetPin(%q) accepted", user)
		}
		if err := p.Remove(user); err == nil {
			t.Errorf("Remove(%q) accepted", user)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.json")); err != nil {
		t.Fatalf("Remove(\"../x\") removed a file outside the directory: %v", err)
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Fatalf("an invalid SetPin created the directory: %v", err)
	}
	// 64 characters is the longest id.
	long := strings.Repeat("a", 64)
	if err := p.SetPin(&keychain.Pin{User: long, Genesis: testFpr, Seq: -1}); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Pin(long); err != nil || got == nil {
		t.Fatalf("Pin(64 characters) = %+v, %v", got, err)
	}
}

// A file that holds another user's pin, or no pin, is an error, never a
// pin and never "no pin".
func TestPinsBadFile(t *testing.T) {
	p := Pins{Dir: t.TempDir()}
	for _, c := range []struct{ name, content string }{
		{"another user's pin", `{"user":"bob","genesis":"` + testFpr + `","seq":-1}`},
		{"no user", `{"genesis":"` + testFpr + `","seq":-1}`},
		{"not JSON", `{"user":"alice",`},
		{"empty", ``},
	} {
		if err := os.WriteFile(filepath.Join(p.Dir, "alice.json"), []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := p.Pin("alice"); err == nil {
			t.Errorf("%s: Pin = %+v, nil; want an error", c.name, got)
		}
	}
}
