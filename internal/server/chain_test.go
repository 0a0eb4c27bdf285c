package server

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// Attacks on the key chain: the operator (admin token, and everything the
// server lets in without a device's signature) must not be able to add or
// remove a key of a user; a device only through a valid link. Each refused
// request is a problem and changes nothing.

// forEachBackend runs f on SQLite and, when configured, PostgreSQL.
func forEachBackend(t *testing.T, f func(t *testing.T, b storetest.Backend)) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

// signLink signs an arbitrary chain link (fields as given) with signer;
// pub, if set, is the key it carries.
func signLink(t testing.TB, l statement.ChainLink, signer, pub *envelope.Key) api.ChainLink {
	t.Helper()
	stmt, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out := api.ChainLink{Statement: string(stmt), Signature: string(mustSign(t, stmt, signer))}
	if pub != nil {
		out.PublicKey = string(pub.Public().Armor())
	}
	return out
}

// refused sends a request that must fail with status and change nothing.
func (e *env) refused(method, path, token string, body any, status int) api.Problem {
	e.t.Helper()
	before := e.snap()
	resp, data := e.do(method, path, token, body)
	p := e.wantProblem(resp, data, status)
	e.t.Logf("%s %s: %d %s", method, path, status, p.Detail)
	e.unchanged(before)
	if strings.Contains(string(data), "BEGIN PGP") {
		e.t.Fatal("problem echoes a key or signature")
	}
	return p
}

// loginStatus runs the challenge/token exchange for key and returns the
// token route's status.
func (e *env) loginStatus(key *envelope.Key) int {
	e.t.Helper()
	var ch api.ChallengeResponse
	e.call("POST", api.PathAuthChallenge, "", api.ChallengeRequest{Fingerprint: key.Fingerprint()}, 200, &ch)
	sig := signChallenge(e.t, key, ch.Nonce, key.Fingerprint())
	resp, _ := e.do("POST", api.PathAuthToken, "", api.TokenRequest{Fingerprint: key.Fingerprint(), Nonce: ch.Nonce, Signature: string(sig)})
	return resp.StatusCode
}

// partyKeys is what a party gets for the user: the chain, verified, and
// the server's keys.
func (e *env) partyKeys(p *party, userID string) (api.UserKeys, *keychain.State) {
	e.t.Helper()
	var uk api.UserKeys
	e.call("GET", api.Path(api.PathUserKeys, userID), p.token, nil, 200, &uk)
	if len(uk.Chain) == 0 {
		return uk, nil
	}
	st, err := keychain.Verify(userID, uk.Chain)
	if err != nil {
		e.t.Fatalf("the served chain does not verify: %v", err)
	}
	return uk, st
}

// TestOperatorCannotChangeKeys: the admin routes that set a recovery key or
// revoke a device are gone, and an enrollment code can neither be issued
// nor used for a user who has a key chain, not even a code issued before
// the first device enrolled.
func TestOperatorCannotChangeKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		userID, code := e.createUser("alice")
		var early api.EnrollmentCode // issued while alice has no device yet
		e.call("POST", api.Path(api.PathAdminUserCodes, userID), testAdminToken, nil, 201, &early)
		dev := e.enroll(code)
		lab := e.newParty("lab")
		opKey := genKey(t, "operator")
		opParty := e.newParty("operator's party")

		for _, c := range []struct{ method, path string }{
			{"PUT", "/v1/admin/users/" + userID + "/recovery-key"},
			{"POST", "/v1/admin/users/" + userID + "/recovery-key"},
			{"POST", "/v1/admin/devices/" + dev.id + "/revoke"},
			{"POST", "/v1/admin/users/" + userID + "/devices"},
		} {
			for _, body := range []any{nil, map[string]string{"public_key": string(opParty.key.Public().Armor())}} {
				before := e.snap()
				resp, data := e.do(c.method, c.path, testAdminToken, body)
				if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
					t.Fatalf("%s %s: %d %s", c.method, c.path, resp.StatusCode, data)
				}
				e.wantProblem(resp, data, resp.StatusCode)
				e.unchanged(before)
			}
		}
		// No code for a user with a chain.
		if p := e.refused("POST", api.Path(api.PathAdminUserCodes, userID), testAdminToken, nil, 409); !strings.Contains(p.Detail, "reset") {
			t.Fatalf("enrollment-codes for a user with a chain: %q", p.Detail)
		}
		// The early code is valid, unused, unexpired, and still useless.
		e.refused("POST", api.PathEnrollInfo, "", api.EnrollInfoRequest{Code: early.Code}, 409)
		e.refused("POST", api.PathEnroll, "", firstLinkRequest(t, early.Code, userID, opKey, e.clock.now()), 409)
		// A first link on top of the chain is not a way in either.
		l := signLink(t, statement.ChainLink{User: userID, Seq: 1, Prev: keychain.LinkHash([]byte(e.partyChain(lab, userID)[0].Statement)),
			Action: statement.ActionAddDevice, Key: opKey.Fingerprint(), KeySHA256: keychain.KeyHash(opKey), Signer: opKey.Fingerprint(),
			Time: e.clock.now().Truncate(time.Second)}, opKey, opKey)
		e.refused("POST", api.PathEnroll, "", api.EnrollRequest{Code: early.Code, PublicKey: string(opKey.Public().Armor()), Link: l}, 409)

		// The user's keys are what the device made them: one device.
		uk, st := e.partyKeys(lab, userID)
		if len(uk.Keys) != 1 || len(st.Recipients()) != 1 || st.Recipients()[0].Fingerprint() != dev.key.Fingerprint() || st.Genesis() != dev.key.Fingerprint() {
			t.Fatalf("keys after the attempts: %+v", uk.Keys)
		}
	})
}

// partyChain is the chain a party is served for the user.
func (e *env) partyChain(p *party, userID string) []api.ChainLink {
	e.t.Helper()
	uk, _ := e.partyKeys(p, userID)
	return uk.Chain
}

// TestEnrollForgedFirstLink: the first link must add public_key, for the
// code's user, at seq 0, signed by public_key itself; anything else is
// refused and leaves the code usable.
func TestEnrollForgedFirstLink(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		userID, code := e.createUser("alice")
		bobID, _ := e.createUser("bob")
		k := genKey(t, "phone")
		other := genKey(t, "other")
		now := e.clock.now()
		genuine := firstLinkRequest(t, code, userID, k, now)
		with := func(mod func(r *api.EnrollRequest)) api.EnrollRequest {
			r := genuine
			mod(&r)
			return r
		}
		first := func(user string, seq int64, key, signer *envelope.Key, at time.Time) api.ChainLink {
			l := statement.ChainLink{User: user, Seq: seq, Action: statement.ActionAddDevice, Key: key.Fingerprint(),
				KeySHA256: keychain.KeyHash(key), Signer: signer.Fingerprint(), Time: at.Truncate(time.Second)}
			if seq > 0 {
				l.Prev = keychain.LinkHash([]byte(genuine.Link.Statement))
			}
			return signLink(t, l, signer, key)
		}
		cases := []struct {
			name   string
			req    api.EnrollRequest
			status int
		}{
			{"signed by another key", with(func(r *api.EnrollRequest) { r.Link = first(userID, 0, k, other, now) }), 422},
			{"signature by another key", with(func(r *api.EnrollRequest) { r.Link.Signature = string(mustSign(t, []byte(r.Link.Statement), other)) }), 422},
			{"for another user", with(func(r *api.EnrollRequest) { r.Link = first(bobID, 0, k, k, now) }), 422},
			{"link key is not public_key", with(func(r *api.EnrollRequest) { r.Link = first(userID, 0, other, other, now) }), 422},
			{"link carries another key than public_key", with(func(r *api.EnrollRequest) { r.Link.PublicKey = string(other.Public().Armor()) }), 422},
			{"seq 1", with(func(r *api.EnrollRequest) { r.Link = first(userID, 1, k, k, now) }), 422},
			{"revoke-device", with(func(r *api.EnrollRequest) {
				r.Link = signLink(t, statement.ChainLink{User: userID, Action: statement.ActionRevokeDevice, Key: k.Fingerprint(),
					KeySHA256: keychain.KeyHash(k), Signer: k.Fingerprint(), Time: now.Truncate(time.Second)}, k, nil)
			}), 422},
			{"stale time", with(func(r *api.EnrollRequest) { r.Link = first(userID, 0, k, k, now.Add(-2*time.Hour)) }), 422},
			{"garbage statement", with(func(r *api.EnrollRequest) { r.Link.Statement = "keyholder-chain-link-v1\nuser: x\n" }), 422},
			{"no link", with(func(r *api.EnrollRequest) { r.Link = api.ChainLink{} }), 400},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := e.refused("POST", api.PathEnroll, "", c.req, c.status)
				if c.status == 422 && p.Type != api.ProblemBadStatement {
					t.Fatalf("problem type %s", p.Type)
				}
			})
		}
		// The code still works, once, with the genuine link.
		var r api.EnrollResponse
		e.call("POST", api.PathEnroll, "", genuine, 201, &r)
		if r.UserID != userID || r.Fingerprint != k.Fingerprint() {
			t.Fatalf("enroll response %+v", r)
		}
		e.refused("POST", api.PathEnroll, "", genuine, 403)
		var n int64
		e.st.DB(t.Context()).Model(&store.ChainLink{}).Count(&n)
		if n != 1 {
			t.Fatalf("%d chain links stored", n)
		}
	})
}

// TestChainPostAttacks: POST /v1/device/chain takes only revoke-device,
// set-recovery and remove-recovery links that the caller signed and the
// chain accepts.
func TestChainPostAttacks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev1 := e.newUser("alice")
		dev2 := e.addDevice(dev1)
		dev3 := e.addDevice(dev1)
		mallory := e.newUser("mallory")
		lab := e.newParty("lab")
		stranger := genKey(t, "stranger")
		stale := e.chainOf(dev1) // before the recovery key below
		rk := genKey(t, "recovery")
		e.extend(dev1, statement.ActionSetRecovery, rk.Public())
		now := e.clock.now()
		sign := func(action string, target, signer *envelope.Key) api.ChainLink {
			return e.link(dev1, action, target, signer)
		}
		st := e.chainOf(dev1)
		seq, prev := st.Next()
		revokeStranger := signLink(t, statement.ChainLink{User: dev1.user, Seq: seq, Prev: prev, Action: statement.ActionRevokeDevice,
			Key: stranger.Fingerprint(), KeySHA256: keychain.KeyHash(stranger), Signer: dev1.key.Fingerprint(), Time: now.Truncate(time.Second)}, dev1.key, nil)
		revokeMallory := signLink(t, statement.ChainLink{User: dev1.user, Seq: seq, Prev: prev, Action: statement.ActionRevokeDevice,
			Key: mallory.key.Fingerprint(), KeySHA256: keychain.KeyHash(mallory.key), Signer: dev1.key.Fingerprint(), Time: now.Truncate(time.Second)}, dev1.key, nil)
		staleRevoke, err := stale.Sign(statement.ActionRevokeDevice, dev3.key, dev1.key, now)
		if err != nil {
			t.Fatal(err)
		}
		badSig := sign(statement.ActionRevokeDevice, dev3.key, dev1.key)
		badSig.Signature = string(mustSign(t, []byte(badSig.Statement), stranger))
		forMallory := func() api.ChainLink {
			l, err := e.chainOf(mallory).Sign(statement.ActionRevokeDevice, mallory.key, dev1.key, now)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}()
		cases := []struct {
			name   string
			link   api.ChainLink
			status int
		}{
			{"signed by another device than the caller", sign(statement.ActionRevokeDevice, dev3.key, dev2.key), 422},
			{"signed by a stranger naming itself", sign(statement.ActionRevokeDevice, dev3.key, stranger), 422},
			{"signature by another key", badSig, 422},
			{"revoke of a non-member", revokeStranger, 422},
			{"revoke of another user's device", revokeMallory, 422},
			{"for another user's chain", forMallory, 422},
			{"set-recovery of a party key", sign(statement.ActionSetRecovery, lab.key.Public(), dev1.key), 409},
			{"set-recovery of another user's device key", sign(statement.ActionSetRecovery, mallory.key.Public(), dev1.key), 409},
			{"set-recovery of a member", sign(statement.ActionSetRecovery, dev2.key.Public(), dev1.key), 409},
			{"add-device", sign(statement.ActionAddDevice, stranger, dev1.key), 400},
			{"stale seq and prev", staleRevoke, 409},
			{"remove-recovery of another key", sign(statement.ActionRemoveRecovery, stranger, dev1.key), 422},
			{"garbage", api.ChainLink{Statement: "x", Signature: "y"}, 422},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.refused("POST", api.PathDeviceChain, dev1.token, c.link, c.status)
			})
		}
		// A revoked device cannot sign anything more.
		e.extend(dev1, statement.ActionRevokeDevice, dev3.key)
		e.refused("POST", api.PathDeviceChain, dev3.token, sign(statement.ActionRevokeDevice, dev2.key, dev3.key), 401)
		e.refused("POST", api.PathDeviceChain, dev1.token, sign(statement.ActionRevokeDevice, dev2.key, dev3.key), 422)
		// Nor be revoked twice.
		st = e.chainOf(dev1)
		seq, prev = st.Next()
		again := signLink(t, statement.ChainLink{User: dev1.user, Seq: seq, Prev: prev, Action: statement.ActionRevokeDevice,
			Key: dev3.key.Fingerprint(), KeySHA256: keychain.KeyHash(dev3.key), Signer: dev1.key.Fingerprint(), Time: now.Truncate(time.Second)}, dev1.key, nil)
		e.refused("POST", api.PathDeviceChain, dev1.token, again, 422)

		// What a party sees: dev1, dev2 and the recovery key, on a chain of
		// five links.
		uk, pst := e.partyKeys(lab, dev1.user)
		if pst.Len() != 5 || len(pst.Recipients()) != 3 || len(uk.Keys) != 3 {
			t.Fatalf("after the attacks: chain of %d links, %d recipients, keys %+v", pst.Len(), len(pst.Recipients()), uk.Keys)
		}
		for i, k := range []*envelope.Key{dev1.key, dev2.key, rk} {
			if pst.Recipients()[i].Fingerprint() != k.Fingerprint() || uk.Keys[i].Fingerprint != k.Fingerprint() {
				t.Fatalf("recipient %d is %s", i, uk.Keys[i].Fingerprint)
			}
		}
	})
}

// TestRevokeViaChain: a device revokes another with a link: the revoked
// device's token dies at once, its stream ends, it cannot log in, and
// uploads need one key packet fewer. A device may revoke itself, unless it
// is the last.
func TestRevokeViaChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev1 := e.newUser("alice")
		dev2 := e.addDevice(dev1)
		lab := e.newParty("lab")
		events, stop := e.sse(dev2)
		defer stop()
		waitFor(t, func() bool { return e.hub.Subscribers(dev2.id) == 1 })
		plaintext := []byte("after the revocation")
		old := e.prepare(lab, dev1.user, plaintext, envelope.Compat) // sealed to both devices

		uk := e.extend(dev1, statement.ActionRevokeDevice, dev2.key)
		if len(uk.Keys) != 1 || uk.Keys[0].Fingerprint != dev1.key.Fingerprint() || len(uk.Chain) != 3 {
			t.Fatalf("after the revocation: %+v", uk)
		}
		streamEnds(t, events)
		resp, data := e.do("GET", api.PathDeviceRequests, dev2.token, nil)
		e.wantProblem(resp, data, 401)
		if s := e.loginStatus(dev2.key); s != 401 {
			t.Fatalf("the revoked device logs in: %d", s)
		}
		var d store.Device
		store.First(e.st.DB(t.Context()), &d, "id = ?", dev2.id)
		if d.Status != store.DeviceRevoked || d.RevokedAt == nil {
			t.Fatalf("device row %+v", d)
		}
		// An upload still sealed to both devices is refused; to one, accepted.
		before := e.snap()
		resp, data = e.send(lab, dev1.user, old)
		if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemWrongKeys {
			t.Fatalf("upload to the revoked device: %s", p.Type)
		}
		e.unchanged(before)
		if keys := e.recipientKeys(lab, dev1.user); len(keys) != 1 {
			t.Fatalf("%d recipient keys", len(keys))
		}
		e.submit(lab, dev1.user, plaintext)
		var kinds []string
		e.st.DB(t.Context()).Model(&store.LogEntry{}).Order("\"index\"").Pluck("kind", &kinds)
		if fmt.Sprint(kinds) != fmt.Sprint([]string{store.LogChainLink, store.LogChainLink, store.LogChainLink}) {
			t.Fatalf("log kinds %v", kinds)
		}
		// The last device cannot revoke itself (nobody could extend the
		// chain again: that is the operator's reset, which parties notice).
		if p := e.refused("POST", api.PathDeviceChain, dev1.token, e.link(dev1, statement.ActionRevokeDevice, dev1.key, dev1.key), 422); !strings.Contains(p.Detail, "last") {
			t.Fatalf("revoking the last device: %q", p.Detail)
		}
		// With another device, a device may revoke itself.
		dev3 := e.addDevice(dev1)
		e.extend(dev1, statement.ActionRevokeDevice, dev1.key)
		resp, data = e.do("GET", api.PathDeviceRequests, dev1.token, nil)
		e.wantProblem(resp, data, 401)
		if uk, _ := e.partyKeys(lab, dev1.user); len(uk.Keys) != 1 || uk.Keys[0].Fingerprint != dev3.key.Fingerprint() || len(uk.Chain) != 5 {
			t.Fatalf("keys after the self-revocation: %+v", uk)
		}
	})
}

// TestRecoveryViaChain: the recovery key is set and removed by links; an
// upload must carry a key packet for it exactly while the chain holds it.
func TestRecoveryViaChain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev := e.newUser("alice")
		lab := e.newParty("lab")
		rk := genKey(t, "recovery")
		withoutRecovery := e.prepare(lab, dev.user, []byte("one"), envelope.Compat)
		e.extend(dev, statement.ActionSetRecovery, rk.Public())

		before := e.snap()
		resp, data := e.send(lab, dev.user, withoutRecovery)
		if p := e.wantProblem(resp, data, 422); p.Type != api.ProblemWrongKeys {
			t.Fatalf("upload without the recovery key packet: %s", p.Type)
		}
		e.unchanged(before)
		withRecovery := e.prepare(lab, dev.user, []byte("two"), envelope.Compat)
		if resp, data := e.send(lab, dev.user, withRecovery); resp.StatusCode != 201 {
			t.Fatalf("upload with the recovery key packet: %d %s", resp.StatusCode, data)
		}
		_, st := e.partyKeys(lab, dev.user)
		if st.Recovery() == nil || st.Recovery().Fingerprint() != rk.Fingerprint() {
			t.Fatal("the chain does not hold the recovery key")
		}
		// Removed: now an upload with its packet is refused.
		e.extend(dev, statement.ActionRemoveRecovery, rk.Public())
		again := e.prepare(lab, dev.user, []byte("three"), envelope.Compat) // sealed to the device only
		again.body, again.digest = sealMsg(t, envelope.Compat, []byte("three"), dev.key.Public(), rk.Public())
		e.sign(lab, dev.user, again)
		before = e.snap()
		resp, data = e.send(lab, dev.user, again)
		e.wantProblem(resp, data, 422)
		e.unchanged(before)
		var u store.User
		store.First(e.st.DB(t.Context()), &u, "id = ?", dev.user)
		if len(u.RecoveryKey) != 0 || u.RecoveryFingerprint != "" {
			t.Fatal("the recovery key is still on the user row")
		}
	})
}

// TestResetFlow: the operator's reset revokes every device (tokens dead,
// streams ended), clears the recovery key, expires open link requests and
// old codes, logs the reset, and returns a code that works once for the
// first device of a new chain, which starts again at seq 0.
func TestResetFlow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev1 := e.newUser("alice")
		dev2 := e.addDevice(dev1)
		e.extend(dev1, statement.ActionSetRecovery, genKey(t, "recovery").Public())
		lab := e.newParty("lab")
		_, oldChain := e.partyKeys(lab, dev1.user)
		lr := e.requestLink(dev1.user, genKey(t, "pending"))
		events, stop := e.sse(dev1)
		defer stop()
		waitFor(t, func() bool { return e.hub.Subscribers(dev1.id) == 1 })

		e.refused("POST", api.Path(api.PathAdminUserReset, dev1.user), "", nil, 401)
		e.refused("POST", api.Path(api.PathAdminUserReset, store.NewID()), testAdminToken, nil, 404)
		var code api.EnrollmentCode
		e.call("POST", api.Path(api.PathAdminUserReset, dev1.user), testAdminToken, nil, 200, &code)
		if code.UserID != dev1.user || code.Code == "" {
			t.Fatalf("reset response %+v", code)
		}
		streamEnds(t, events)
		for _, d := range []*device{dev1, dev2} {
			resp, data := e.do("GET", api.PathDeviceRequests, d.token, nil)
			e.wantProblem(resp, data, 401)
			if s := e.loginStatus(d.key); s != 401 {
				t.Fatalf("a device of the old chain logs in: %d", s)
			}
		}
		var u store.User
		store.First(e.st.DB(t.Context()), &u, "id = ?", dev1.user)
		if u.ChainEpoch != 1 || len(u.RecoveryKey) != 0 {
			t.Fatalf("user after reset: epoch %d, recovery key %d bytes", u.ChainEpoch, len(u.RecoveryKey))
		}
		var st api.LinkRequest
		e.call("GET", api.Path(api.PathLinkRequest, lr.ID), "", nil, 200, &st)
		if st.State != store.LinkExpired {
			t.Fatalf("open link request after reset: %s", st.State)
		}
		var leaf store.LogEntry
		store.First(e.st.DB(t.Context()), &leaf, "kind = ?", store.LogChainReset)
		if want := fmt.Sprintf("keyholder-chain-reset-v1\nuser: %s\nepoch: 1\ntime: ", dev1.user); !strings.HasPrefix(string(leaf.Leaf), want) {
			t.Fatalf("reset leaf %q", leaf.Leaf)
		}
		// No keys until a new first device; nothing can be uploaded.
		uk, _ := e.partyKeys(lab, dev1.user)
		if len(uk.Chain) != 0 || len(uk.Keys) != 0 {
			t.Fatalf("keys after reset: %+v", uk)
		}
		resp, data := e.send(lab, dev1.user, &upload{meta: []byte(`{"content_type":"a/b","size":1}`), body: []byte("x"), stmt: []byte("x"), sig: []byte("x")})
		e.wantProblem(resp, data, 409)

		// The new code, once.
		dev3 := e.enroll(code.Code)
		if dev3.user != dev1.user {
			t.Fatal("enrolled for another user")
		}
		e.refused("POST", api.PathEnroll, "", firstLinkRequest(t, code.Code, dev1.user, genKey(t, "again"), e.clock.now()), 403)
		e.refused("POST", api.Path(api.PathAdminUserCodes, dev1.user), testAdminToken, nil, 409)
		uk, newChain := e.partyKeys(lab, dev1.user)
		l0, err := statement.ParseChainLink([]byte(uk.Chain[0].Statement))
		if err != nil || l0.Seq != 0 || l0.Prev != ([32]byte{}) || len(uk.Chain) != 1 || newChain.Genesis() != dev3.key.Fingerprint() {
			t.Fatalf("new chain %+v (%v)", uk.Chain, err)
		}
		// A party that pinned the old chain refuses the new one.
		if err := newChain.Extends(oldChain.Pin()); err == nil {
			t.Fatal("the new chain extends the old pin")
		}
		var links []store.ChainLink
		e.st.DB(t.Context()).Where("user_id = ?", dev1.user).Order("epoch, seq").Find(&links)
		if len(links) != 4 || links[2].Epoch != 0 || links[3].Epoch != 1 || links[3].Seq != 0 {
			t.Fatalf("stored links: %d", len(links))
		}
		// The new device can add devices again; an old one cannot come back.
		e.addDevice(dev3)
		e.refused("POST", api.PathLinkRequests, "", api.LinkRequestCreate{User: dev1.user, PublicKey: string(dev2.key.Public().Armor())}, 409)
		// A second reset goes to epoch 2.
		e.call("POST", api.Path(api.PathAdminUserReset, dev1.user), testAdminToken, nil, 200, &code)
		store.First(e.st.DB(t.Context()), &u, "id = ?", dev1.user)
		if u.ChainEpoch != 2 {
			t.Fatalf("epoch %d", u.ChainEpoch)
		}
	})
}

// TestResetExpiresOldCodes: a code issued before the reset (for a user
// who never enrolled) dies with it; only the returned one works.
func TestResetExpiresOldCodes(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	userID, old := e.createUser("alice")
	var code api.EnrollmentCode
	e.call("POST", api.Path(api.PathAdminUserReset, userID), testAdminToken, nil, 200, &code)
	e.refused("POST", api.PathEnrollInfo, "", api.EnrollInfoRequest{Code: old}, 403)
	e.refused("POST", api.PathEnroll, "", firstLinkRequest(t, old, userID, genKey(t, "k"), e.clock.now()), 403)
	e.enroll(code.Code)
}

// TestRequestCarriesChain: a request's detail carries the user's chain as
// GET /v1/device/chain serves it, before and after the chain changes, for
// record and access requests alike.
func TestRequestCarriesChain(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	check := func(det api.RequestDetail) {
		t.Helper()
		var uk api.UserKeys
		e.call("GET", api.PathDeviceChain, dev.token, nil, 200, &uk)
		if det.Chain == nil || !reflect.DeepEqual(*det.Chain, uk) {
			t.Fatalf("the %s request's chain:\n%+v\nGET /v1/device/chain:\n%+v", det.Kind, det.Chain, uk)
		}
	}
	rec, _ := e.submit(lab, dev.user, []byte("x"))
	check(e.findRequest(dev, store.KindApproval, rec.ID))
	dev2 := e.addDevice(dev)
	rec2, _ := e.submit(lab, dev.user, []byte("y"))
	det := e.findRequest(dev, store.KindApproval, rec2.ID)
	if len(det.Chain.Chain) != 2 {
		t.Fatalf("after a second device: %d links", len(det.Chain.Chain))
	}
	check(det)
	e.approve(dev2, rec2.ID)
	e.call("POST", api.Path(api.PathRecordAccess, rec2.ID), lab.token, api.AccessRequest{Purpose: "check", ExpiresIn: 60}, 202, nil)
	check(e.findRequest(dev, store.KindAccess, rec2.ID))
}
