package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// otherToolKey makes a key the way another OpenPGP implementation might
// (cfg: a v6 key as OpenPGP.js 6 makes, a v4 key without SEIPDv2 as GnuPG
// or RNP make), with its private part, as envelope.ParseKey reads it.
func otherToolKey(t testing.TB, cfg *packet.Config) *envelope.Key {
	t.Helper()
	e, err := openpgp.NewEntity("other tool", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		t.Fatal(err)
	}
	k, err := envelope.ParseKey(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newPartyWithKey registers key as a party and logs it in.
func (e *env) newPartyWithKey(name string, k *envelope.Key) *party {
	e.t.Helper()
	var p api.Party
	e.call("POST", api.PathAdminParties, testAdminToken, api.CreatePartyRequest{Name: name, PublicKey: string(k.Public().Armor())}, 201, &p)
	return &party{key: k, id: p.ID, name: name, token: e.login(k)}
}

// TestAccessRefusedForIncompatibleKey: a party whose key cannot receive
// the record's profile is refused at the access request with a 422 that
// names the profile and the key, and nothing reaches the phone: no
// request row, no push. Before, the request went to the device, whose
// rewrap failed (compat) or made a grant the party could not open (modern).
func TestAccessRefusedForIncompatibleKey(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	aead := &packet.AEADConfig{DefaultMode: packet.AEADModeGCM}
	v6 := e.newPartyWithKey("openpgpjs", otherToolKey(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, AEADConfig: aead}))
	noV2 := e.newPartyWithKey("gnupg-like", otherToolKey(t, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}))

	compat, _ := e.submit(lab, dev.user, []byte("compat record"))
	e.approve(dev, compat.ID)
	u := e.prepare(lab, dev.user, []byte("modern record"), envelope.Modern)
	resp, data := e.send(lab, dev.user, u)
	if resp.StatusCode != 201 {
		t.Fatalf("modern upload: %d %s", resp.StatusCode, data)
	}
	var modern api.Record
	if err := json.Unmarshal(data, &modern); err != nil {
		t.Fatal(err)
	}
	e.approve(dev, modern.ID)
	e.srv.waitPushes()
	pushes := len(e.pushes.all())

	for _, tc := range []struct {
		p       *party
		record  string
		profile string
	}{
		{v6, compat.ID, "compat"},
		{noV2, modern.ID, "modern"},
	} {
		before := e.snap()
		resp, data := e.do("POST", api.Path(api.PathRecordAccess, tc.record), tc.p.token, api.AccessRequest{Purpose: "read it"})
		p := e.wantProblem(resp, data, 422)
		if p.Type != api.ProblemIncompatibleKey {
			t.Fatalf("%s: problem type %s", tc.p.name, p.Type)
		}
		if !strings.Contains(p.Detail, tc.profile+" profile") || !strings.Contains(p.Detail, tc.p.key.Fingerprint()) {
			t.Fatalf("%s: detail %q does not name the %s profile and the key", tc.p.name, p.Detail, tc.profile)
		}
		e.unchanged(before)
	}
	e.srv.waitPushes()
	if n := len(e.pushes.all()); n != pushes {
		t.Fatalf("%d pushes for refused access requests", n-pushes)
	}

	// The pairings that work still do, and the v6 party gets a grant on
	// the modern record that opens with its key.
	e.grantAccess(dev, v6, modern.ID, 600)
	e.grantAccess(dev, noV2, compat.ID, 600)
}
