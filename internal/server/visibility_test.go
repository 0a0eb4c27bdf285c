package server

import (
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestRecordVisibility: a grantee sees the record, its grant and its
// content only while the grant is valid; once it expired (or is revoked),
// all three are the same 404 as for a stranger. The submitter always sees
// its record but, without a grant, not the grant or the content.
func TestRecordVisibility(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.TokenTTL = 48 * time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	rec, _ := e.submit(lab, dev.user, []byte("r"))
	e.approve(dev, rec.ID)
	e.grantAccess(dev, bank, rec.ID, 600)

	paths := []string{api.PathRecord, api.PathRecordGrant, api.PathRecordContent}
	for _, p := range paths {
		e.call("GET", api.Path(p, rec.ID), bank.token, nil, 200, nil)
	}
	e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, nil)
	for _, p := range paths[1:] {
		resp, data := e.do("GET", api.Path(p, rec.ID), lab.token, nil)
		e.wantProblem(resp, data, 404)
	}

	e.clock.advance(11 * time.Minute)
	before := e.snap()
	for _, p := range paths {
		resp, data := e.do("GET", api.Path(p, rec.ID), bank.token, nil)
		e.wantProblem(resp, data, 404)
	}
	e.unchanged(before)
	e.call("GET", api.Path(api.PathRecord, rec.ID), lab.token, nil, 200, nil)

	// A fresh grant, then revoked: the same.
	e.grantAccess(dev, bank, rec.ID, 600)
	var g api.Grant
	e.call("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil, 200, &g)
	e.call("GET", api.Path(api.PathRecord, rec.ID), bank.token, nil, 200, nil)
	e.call("POST", api.Path(api.PathDeviceRevokeGrant, g.ID), dev.token, nil, 200, nil)
	for _, p := range paths {
		resp, data := e.do("GET", api.Path(p, rec.ID), bank.token, nil)
		e.wantProblem(resp, data, 404)
	}
}

// TestResponsesCarryRealValues: after a set-recovery link, the user list
// counts the user's active devices and names the recovery key, and the
// chain route's answer holds both devices and the recovery key; the revoke
// response names the grantee.
func TestResponsesCarryRealValues(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	e.addDevice(dev)
	lab := e.newParty("lab")
	bank := e.newParty("bank")

	rk := genKey(t, "recovery")
	uk := e.extend(dev, statement.ActionSetRecovery, rk.Public())
	if len(uk.Chain) != 3 || len(uk.Keys) != 3 || uk.Keys[2].Role != "recovery" || uk.Keys[2].Fingerprint != rk.Fingerprint() {
		t.Fatalf("set-recovery response: %+v", uk)
	}
	var users struct{ Users []api.User }
	e.call("GET", api.PathAdminUsers, testAdminToken, nil, 200, &users)
	if len(users.Users) != 1 || users.Users[0].Devices != 2 || users.Users[0].RecoveryFingerprint != rk.Fingerprint() {
		t.Fatalf("user after set-recovery: %+v, want 2 devices", users.Users)
	}

	rec, _ := e.submit(lab, dev.user, []byte("r"))
	e.approve(dev, rec.ID)
	e.grantAccess(dev, bank, rec.ID, 600)
	var g api.Grant
	e.call("GET", api.Path(api.PathRecordGrant, rec.ID), bank.token, nil, 200, &g)
	var rg api.Grant
	e.call("POST", api.Path(api.PathDeviceRevokeGrant, g.ID), dev.token, nil, 200, &rg)
	if rg.GranteeFP != bank.key.Fingerprint() || rg.DeviceFingerprint != dev.key.Fingerprint() || rg.Revoked == nil {
		t.Fatalf("revoke response: %+v", rg)
	}
}
