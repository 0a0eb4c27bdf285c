package envelope

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// publicKeyMadeWith generates a go-crypto entity with cfg and returns its
// public key as a party would register it (serialized and parsed again).
func publicKeyMadeWith(t *testing.T, cfg *packet.Config) *Key {
	t.Helper()
	e, err := openpgp.NewEntity("other tool", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCanReceive: which keys can be handed a record of which profile. A
// refusal wraps ErrProfileMismatch and names the key and the profile.
func TestCanReceive(t *testing.T) {
	aead := &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}
	keys := map[string]*Key{
		"keyholder":         namedKey("party").Public(),
		"v4 without SEIPD2": publicKeyMadeWith(t, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}),
		"v6 with SEIPDv2":   publicKeyMadeWith(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, AEADConfig: aead}),
		"v6 without SEIPD2": publicKeyMadeWith(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519}),
	}
	tests := []struct {
		key     string
		profile Profile
		ok      bool
		says    string // in the error
	}{
		{"keyholder", Compat, true, ""},
		{"keyholder", Modern, true, ""},
		{"v4 without SEIPD2", Compat, true, ""},
		{"v4 without SEIPD2", Modern, false, "does not advertise SEIPDv2"},
		{"v6 with SEIPDv2", Compat, false, "v6 key; the compat profile"},
		{"v6 with SEIPDv2", Modern, true, ""},
		{"v6 without SEIPD2", Compat, false, "compat"},
		{"v6 without SEIPD2", Modern, false, "modern"},
	}
	for _, tc := range tests {
		t.Run(tc.key+"/"+string(tc.profile), func(t *testing.T) {
			k := keys[tc.key]
			err := k.CanReceive(tc.profile)
			if tc.ok {
				if err != nil {
					t.Fatalf("CanReceive: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrProfileMismatch) {
				t.Fatalf("CanReceive = %v, want ErrProfileMismatch", err)
			}
			if !strings.Contains(err.Error(), k.Fingerprint()) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q does not name the key %s and %q", err, k.Fingerprint(), tc.says)
			}
		})
	}
	if err := keys["keyholder"].CanReceive(Profile("legacy")); err == nil {
		t.Error("CanReceive of an unknown profile succeeded")
	}
}

// TestCanReceiveAgreesWithRewrap: where CanReceive says no to a compat
// record, Rewrap fails too (so checking first loses nothing); where it
// says no to a modern record, Rewrap would have made a key packet the
// recipient's software may not read, which is why the check exists.
func TestCanReceiveAgreesWithRewrap(t *testing.T) {
	device := namedKey("device")
	noAEAD := publicKeyMadeWith(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	for _, profile := range allProfiles {
		msg, _ := seal(t, profile, []byte("x"), device)
		m, _ := splitParts(t, msg)
		_, rerr := Rewrap(m.KeyPackets[0], profile, device, noAEAD)
		cerr := noAEAD.CanReceive(profile)
		if cerr == nil {
			t.Fatalf("%s: CanReceive accepted a v6 key without SEIPDv2", profile)
		}
		if profile == Compat && rerr == nil {
			t.Errorf("compat: Rewrap succeeded where CanReceive refused")
		}
		if profile == Modern && rerr != nil {
			t.Errorf("modern: Rewrap failed (%v); the check is what stops it", rerr)
		}
	}
}
