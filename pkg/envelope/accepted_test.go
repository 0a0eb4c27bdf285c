package envelope_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestOtherToolsKeysAccepted keeps docs/protocol.md §1 true for keys that
// other tools make and that Keyholder's own keygen does not: Ed448/X448
// (OpenPGP.js curve448, v4 and v6) and Sequoia's certify-only primary key
// with a signing subkey. Each parses, signs statements that verify,
// receives the profiles its version allows and opens what is sealed to it.
// The fixtures in testdata/keys are test keys without a passphrase, made
// by sq 0.27 (sq key generate --expires never) and OpenPGP.js 6.3.2
// (generateKey type curve448; aeadProtect for the v6 key, so that it
// advertises SEIPDv2).
func TestOtherToolsKeysAccepted(t *testing.T) {
	for _, tc := range []struct {
		file     string
		profiles []envelope.Profile // the profiles the key can receive
	}{
		{"openpgpjs-curve448-v4.key", []envelope.Profile{envelope.Compat}},
		{"openpgpjs-curve448-v6.key", []envelope.Profile{envelope.Modern}},
		{"sq-cv25519.key", []envelope.Profile{envelope.Compat}},
		{"sq-rsa3k.key", []envelope.Profile{envelope.Compat}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "keys", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			key, err := envelope.ParseKey(data)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			pub, err := envelope.ParseKey(key.Public().Armor())
			if err != nil {
				t.Fatalf("ParseKey of the public key: %v", err)
			}
			text := []byte("keyholder-auth-v1\nnonce: 0123456789abcdef\nfingerprint: " + key.Fingerprint() + "\n")
			sig, err := statement.Sign(text, key)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if err := statement.Verify(text, sig, pub); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			for _, p := range []envelope.Profile{envelope.Compat, envelope.Modern} {
				can := pub.CanReceive(p) == nil
				want := false
				for _, q := range tc.profiles {
					want = want || q == p
				}
				if can != want {
					t.Fatalf("CanReceive(%s) = %v, want %v", p, pub.CanReceive(p), want)
				}
				if !can {
					continue
				}
				var buf bytes.Buffer
				w, err := envelope.Seal(&buf, p, pub)
				if err != nil {
					t.Fatal(err)
				}
				w.Write([]byte("results"))
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				r, err := envelope.Open(&buf, key)
				if err != nil {
					t.Fatalf("%s: Open: %v", p, err)
				}
				got, err := io.ReadAll(r)
				if err != nil || string(got) != "results" {
					t.Fatalf("%s: opened %q, %v", p, got, err)
				}
			}
		})
	}
}
