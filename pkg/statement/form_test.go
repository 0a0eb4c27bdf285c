package statement

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// TestCheckSignatureForm: what Verify checks of a signature whatever the
// key, with the message a party needs for the common mistake.
func TestCheckSignatureForm(t *testing.T) {
	k := stmtKey(t, "party")
	st := stmtMarshal(t, stmtApproval())
	var text bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&text, k.Entity(), bytes.NewReader(st), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sig, err string
	}{
		{"binary", string(stmtSign(t, st, k)), ""},
		{"text mode", text.String(), "signature type text (0x01); statements are signed as binary (0x00)"},
		{"not a signature", "hello", "envelope: invalid signature"},
		{"empty", "", "empty signature"},
	} {
		err := CheckSignatureForm([]byte(tc.sig))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}
