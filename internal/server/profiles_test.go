package server

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestProfilesSetting: a deployment that takes one record profile
// (keyholderd serve --profiles) refuses an upload sealed in the other, in
// its body or its private metadata, with 422 profile-not-accepted naming
// both, and stores nothing; the profile it takes is accepted.
func TestProfilesSetting(t *testing.T) {
	for _, tc := range []struct {
		accept, refuse envelope.Profile
	}{
		{envelope.Compat, envelope.Modern},
		{envelope.Modern, envelope.Compat},
	} {
		t.Run("only "+string(tc.accept), func(t *testing.T) {
			e := newEnv(t, sqlite(), func(c *Config) { c.Profiles = []envelope.Profile{tc.accept} })
			dev := e.newUser("alice")
			lab := e.newParty("lab")

			refused := e.prepare(lab, dev.user, []byte("refused record"), tc.refuse)
			// A body of the accepted profile with private metadata of the
			// refused one is refused too.
			mixed := e.prepare(lab, dev.user, []byte("mixed record"), tc.accept)
			mixed.private = refused.private
			e.sign(lab, dev.user, mixed)
			for name, u := range map[string]*upload{"body": refused, "private metadata": mixed} {
				before := e.snap()
				resp, data := e.send(lab, dev.user, u)
				p := e.wantProblem(resp, data, 422)
				if p.Type != api.ProblemProfileNotAccepted {
					t.Fatalf("%s: problem %s, want profile-not-accepted", name, p.Type)
				}
				for _, want := range []string{"sealed in the " + string(tc.refuse) + " profile", "accepts only: " + string(tc.accept)} {
					if !strings.Contains(p.Detail, want) {
						t.Errorf("%s: detail %q does not say %q", name, p.Detail, want)
					}
				}
				e.unchanged(before)
			}

			ok := e.prepare(lab, dev.user, []byte("accepted record"), tc.accept)
			if resp, data := e.send(lab, dev.user, ok); resp.StatusCode != 201 {
				t.Fatalf("%s upload: %d %s", tc.accept, resp.StatusCode, data)
			}
		})
	}
}

func TestParseProfiles(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []envelope.Profile
		err  string
	}{
		{[]string{"compat", "modern"}, []envelope.Profile{envelope.Compat, envelope.Modern}, ""},
		{[]string{"modern"}, []envelope.Profile{envelope.Modern}, ""},
		{[]string{" compat", "compat"}, []envelope.Profile{envelope.Compat}, ""},
		{nil, nil, "no record profile"},
		{[]string{"compat", "fast"}, nil, `unknown profile "fast"`},
	} {
		got, err := ParseProfiles(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseProfiles(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("ParseProfiles(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("ParseProfiles(%q) = %v; want %v", tc.in, got, tc.want)
			}
		}
	}
}

// TestErrorsNameTheCause: the common mistakes of a party using another
// OpenPGP tool get an answer that names them (issue 12).
func TestErrorsNameTheCause(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")

	// A text-mode challenge signature (gpg --textmode, --clearsign).
	var ch api.ChallengeResponse
	e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: lab.key.Fingerprint()}, 200, &ch)
	text, err := (&statement.Challenge{Nonce: ch.Nonce, Fingerprint: lab.key.Fingerprint()}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&sig, lab.key.Entity(), bytes.NewReader(text), nil); err != nil {
		t.Fatal(err)
	}
	resp, data := e.do("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: lab.key.Fingerprint(), Nonce: ch.Nonce, Signature: sig.String()})
	if p := e.wantProblem(resp, data, 401); !strings.Contains(p.Detail, "signature type text (0x01); statements are signed as binary (0x00)") {
		t.Errorf("text-mode login: detail %q", p.Detail)
	}
	// The same signature from an unregistered key gets the same answer:
	// it says nothing about which keys are registered.
	other := otherToolKey(t, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	var osig bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&osig, other.Entity(), bytes.NewReader(text), nil); err != nil {
		t.Fatal(err)
	}
	resp, data = e.do("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: other.Fingerprint(), Nonce: ch.Nonce, Signature: osig.String()})
	if p := e.wantProblem(resp, data, 401); !strings.Contains(p.Detail, "signature type text (0x01)") {
		t.Errorf("text-mode login of an unknown key: detail %q", p.Detail)
	}

	// An armored body.
	u := e.prepare(lab, dev.user, []byte("armored record"), envelope.Compat)
	var arm bytes.Buffer
	w, err := armor.Encode(&arm, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(u.body)
	w.Close()
	u.body = arm.Bytes()
	before := e.snap()
	resp, data = e.send(lab, dev.user, u)
	if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemInvalidMessage || !strings.Contains(p.Detail, "ASCII-armored; send the binary message") {
		t.Errorf("armored body: %s %q", p.Type, p.Detail)
	}
	e.unchanged(before)

	// A submission signed in text mode.
	u = e.prepare(lab, dev.user, []byte("text-signed record"), envelope.Compat)
	var ssig bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&ssig, lab.key.Entity(), bytes.NewReader(u.stmt), nil); err != nil {
		t.Fatal(err)
	}
	u.sig = ssig.Bytes()
	resp, data = e.send(lab, dev.user, u)
	if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemBadSignature || !strings.Contains(p.Detail, "signature type text (0x01)") {
		t.Errorf("text-mode submission: %s %q", p.Type, p.Detail)
	}
	e.unchanged(before)

	// A sign-only key (gpg --quick-gen-key NAME rsa3072) is refused with
	// the reason.
	signOnly, err := openpgp.NewEntity("sign only", "", "", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	signOnly.Subkeys = nil
	var pub bytes.Buffer
	aw, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := signOnly.Serialize(aw); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	resp, data = e.do("POST", api.PathAdminParties, testAdminToken, api.CreatePartyRequest{Name: "sign only", PublicKey: pub.String()})
	if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemInvalidKey || !strings.Contains(p.Detail, "encrypt") {
		t.Errorf("sign-only key: %s %q", p.Type, p.Detail)
	}
	e.unchanged(before)
}

// TestMetadataSizeOptional: the public metadata's size is optional, as
// openapi.yaml says; a title there is refused (it belongs, sealed, in the
// private metadata).
func TestMetadataSizeOptional(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	for _, tc := range []struct {
		meta   string
		status int
	}{
		{`{"content_type":"application/pdf","purpose":"lab results"}`, 201},
		{`{"content_type":"application/pdf"}`, 201},
		{`{"title":"Blood test","content_type":"application/pdf"}`, 400},
	} {
		u := e.prepare(lab, dev.user, []byte("record "+tc.meta), envelope.Compat)
		u.meta = []byte(tc.meta)
		e.sign(lab, dev.user, u)
		if resp, data := e.send(lab, dev.user, u); resp.StatusCode != tc.status {
			t.Errorf("metadata %s: %d %s, want %d", tc.meta, resp.StatusCode, data, tc.status)
		}
	}
}

// TestPartyKeyThatCanReceiveNothing: a v6 key that does not advertise
// SEIPDv2 (OpenPGP.js 6 without aeadProtect) could receive no record of
// either profile; registering it as a party is refused, saying why. The
// same key with SEIPDv2 is registered.
func TestPartyKeyThatCanReceiveNothing(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	useless := otherToolKey(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519})
	before := e.snap()
	resp, data := e.do("POST", api.PathAdminParties, testAdminToken, api.CreatePartyRequest{Name: "no SEIPDv2", PublicKey: string(useless.Public().Armor())})
	if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemInvalidKey || !strings.Contains(p.Detail, "can receive no record") || !strings.Contains(p.Detail, "SEIPDv2") {
		t.Errorf("v6 key without SEIPDv2: %s %q", p.Type, p.Detail)
	}
	e.unchanged(before)
	aead := &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}
	e.newPartyWithKey("v6 with SEIPDv2", otherToolKey(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, AEADConfig: aead}))
}
