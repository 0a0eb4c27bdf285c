package server

import (
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// TestLinkAnswerAttacks: a device request is answered only by the
// add-device link of exactly the pending key, signed by the calling device
// (an active member), extending the chain as it is now, once.
func TestLinkAnswerAttacks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev1 := e.newUser("alice")
		dev2 := e.addDevice(dev1)
		dev3 := e.addDevice(dev1)
		mallory := e.newUser("mallory")
		stranger := genKey(t, "stranger")
		nk := genKey(t, "new phone")
		other := genKey(t, "another new phone")
		lr := e.requestLink(dev1.user, nk)
		lr2 := e.requestLink(dev1.user, other)
		stale := e.chainOf(dev1)
		e.extend(dev1, statement.ActionRevokeDevice, dev3.key) // dev3 is revoked, the chain moved on
		now := e.clock.now()
		det := e.deviceRequest(dev1, lr.ID)
		if det.Kind != store.KindDevice || det.NewDeviceFingerprint != nk.Fingerprint() || det.UserID != dev1.user || det.RecordID != "" ||
			det.Expires.Sub(det.Created) != 10*time.Minute {
			t.Fatalf("device request detail %+v", det)
		}
		answer := func(l api.ChainLink) api.AnswerRequest {
			return api.AnswerRequest{Statement: l.Statement, Signature: l.Signature}
		}
		st := e.chainOf(dev1)
		seq, prev := st.Next()
		byRevoked := signLink(t, statement.ChainLink{User: dev1.user, Seq: seq, Prev: prev, Action: statement.ActionAddDevice,
			Key: nk.Fingerprint(), KeySHA256: keychain.KeyHash(nk), Signer: dev3.key.Fingerprint(), Time: now.Truncate(time.Second)}, dev3.key, nil)
		staleLink, err := stale.Sign(statement.ActionAddDevice, nk, dev1.key, now)
		if err != nil {
			t.Fatal(err)
		}
		badSig := e.linkAnswer(dev1, nk, dev1.key)
		badSig.Signature = string(mustSign(t, []byte(badSig.Statement), stranger))
		otherKeyHash := signLink(t, statement.ChainLink{User: dev1.user, Seq: seq, Prev: prev, Action: statement.ActionAddDevice,
			Key: nk.Fingerprint(), KeySHA256: keychain.KeyHash(other), Signer: dev1.key.Fingerprint(), Time: now.Truncate(time.Second)}, dev1.key, nil)
		forMallory, err := e.chainOf(mallory).Sign(statement.ActionAddDevice, nk, dev1.key, now)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name   string
			token  string
			body   any
			status int
			detail string
		}{
			{"signed by a non-member", dev1.token, e.linkAnswer(dev1, nk, stranger), 422, "signer"},
			{"signature by a non-member", dev1.token, badSig, 422, "signature"},
			{"signed by a revoked device", dev1.token, answer(byRevoked), 422, "signer"},
			{"sent by the revoked device", dev3.token, answer(byRevoked), 401, ""},
			{"signed by another device than the caller", dev1.token, e.linkAnswer(dev1, nk, dev2.key), 422, "signer"},
			{"stale prev and seq", dev1.token, answer(staleLink), 409, "fetch the chain"},
			{"for another pending key", dev1.token, e.linkAnswer(dev1, other, dev1.key), 422, "key"},
			{"another key-sha256", dev1.token, answer(otherKeyHash), 422, "key-sha256"},
			{"for another user's chain", dev1.token, answer(forMallory), 422, "user"},
			{"revoke-device instead", dev1.token, answer(e.link(dev1, statement.ActionRevokeDevice, dev2.key, dev1.key)), 422, "action"},
			{"stale time", dev1.token, func() any {
				l, _ := st.Sign(statement.ActionAddDevice, nk, dev1.key, now.Add(-time.Hour))
				return answer(l)
			}(), 422, "time"},
			{"another user's device", mallory.token, e.linkAnswer(dev1, nk, mallory.key), 404, ""},
			{"garbage", dev1.token, api.AnswerRequest{Statement: "x", Signature: "y"}, 422, ""},
			{"unknown field", dev1.token, `{"statement":"a","signature":"b","public_key":"c"}`, 400, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := e.refused("POST", api.Path(api.PathDeviceLink, lr.ID), c.token, c.body, c.status)
				if !strings.Contains(p.Detail, c.detail) {
					t.Fatalf("detail %q does not name %q", p.Detail, c.detail)
				}
			})
		}
		// Approve and grant routes do not answer a device request, nor the
		// link route another kind.
		e.refused("POST", api.Path(api.PathDeviceApprove, lr.ID), dev1.token, api.AnswerRequest{Statement: "x", Signature: "y"}, 409)
		e.refused("POST", api.Path(api.PathDeviceGrant, lr.ID), dev1.token, api.GrantAnswer{KeyPacket: []byte{1}, Statement: "x", Signature: "y"}, 409)
		lab := e.newParty("lab")
		rec, _ := e.submit(lab, dev1.user, []byte("r"))
		adet := e.findRequest(dev1, store.KindApproval, rec.ID)
		e.refused("POST", api.Path(api.PathDeviceLink, adet.ID), dev1.token, e.linkAnswer(dev1, nk, dev1.key), 409)

		// The genuine answer works once.
		good := e.linkAnswer(dev1, nk, dev1.key)
		var ar api.AnswerResponse
		e.call("POST", api.Path(api.PathDeviceLink, lr.ID), dev1.token, good, 200, &ar)
		if ar.Answer != api.AnswerApproved || ar.RequestID != lr.ID || ar.RecordID != "" {
			t.Fatalf("answer %+v", ar)
		}
		e.refused("POST", api.Path(api.PathDeviceLink, lr.ID), dev1.token, good, 409)
		e.refused("POST", api.Path(api.PathDeviceLink, lr.ID), dev2.token, e.linkAnswer(dev2, nk, dev2.key), 409)
		e.refused("POST", api.Path(api.PathDeviceRefuse, lr.ID), dev2.token, nil, 409)
		// The same link replayed on the other request: another key.
		e.refused("POST", api.Path(api.PathDeviceLink, lr2.ID), dev1.token, good, 422)

		var got api.LinkRequest
		e.call("GET", api.Path(api.PathLinkRequest, lr.ID), "", nil, 200, &got)
		if got.State != store.LinkApproved || got.DeviceID == "" || got.Code != keychain.Code(nk) || got.Fingerprint != nk.Fingerprint() {
			t.Fatalf("link request after approval %+v", got)
		}
		nd := &device{key: nk, id: got.DeviceID, user: dev1.user, token: e.login(nk)}
		_, pst := e.partyKeys(lab, dev1.user)
		if m, ok := pst.Device(nk.Fingerprint()); !ok || !m.Active() || len(pst.Devices()) != 3 {
			t.Fatal("the new device is not an active member of the served chain")
		}
		// It can answer requests: the next record is sealed to it too.
		rec2, _ := e.submit(lab, dev1.user, []byte("r2"))
		e.approve(nd, rec2.ID)
		// And it refuses the other link request.
		e.call("POST", api.Path(api.PathDeviceRefuse, lr2.ID), nd.token, nil, 200, &ar)
		got = api.LinkRequest{}
		e.call("GET", api.Path(api.PathLinkRequest, lr2.ID), "", nil, 200, &got)
		if ar.Answer != api.AnswerRefused || got.State != store.LinkRefused || got.DeviceID != "" {
			t.Fatalf("refused link request %+v %+v", ar, got)
		}
		e.refused("POST", api.Path(api.PathDeviceLink, lr2.ID), nd.token, e.linkAnswer(nd, other, nk), 409)
		if s := e.loginStatus(other); s != 401 {
			t.Fatalf("a refused key logs in: %d", s)
		}
	})
}

// TestLinkRequestLimits: unknown users, users without an active device,
// keys already in use, and more than five open requests per user are
// refused; expired requests make room again.
func TestLinkRequestLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev := e.newUser("alice")
		lab := e.newParty("lab")
		noDevice, _ := e.createUser("bob")
		create := func(user string, k *envelope.Key) api.LinkRequestCreate {
			return api.LinkRequestCreate{User: user, PublicKey: string(k.Public().Armor())}
		}
		e.refused("POST", api.PathLinkRequests, "", create(store.NewID(), genKey(t, "x")), 404)
		e.refused("POST", api.PathLinkRequests, "", create("nobody", genKey(t, "x")), 404)
		e.refused("POST", api.PathLinkRequests, "", create("", genKey(t, "x")), 400)
		e.refused("POST", api.PathLinkRequests, "", create(noDevice, genKey(t, "x")), 409)
		e.refused("POST", api.PathLinkRequests, "", create(dev.user, dev.key), 409)
		e.refused("POST", api.PathLinkRequests, "", create(dev.user, lab.key), 409)
		e.refused("POST", api.PathLinkRequests, "", api.LinkRequestCreate{User: dev.user, PublicKey: string(genKey(t, "x").Public().Armor()), PushKind: "fcm"}, 400)
		e.refused("GET", api.Path(api.PathLinkRequest, store.NewID()), "", nil, 404)

		var first api.LinkRequest
		for i := 0; i < maxOpenLinks; i++ {
			user := dev.user
			if i%2 == 1 {
				user = "alice" // by handle
			}
			lr := e.requestLink(user, genKey(t, "k"))
			if lr.UserID != dev.user || lr.State != store.LinkOpen {
				t.Fatalf("link request %+v", lr)
			}
			if i == 0 {
				first = lr
			}
		}
		p := e.refused("POST", api.PathLinkRequests, "", create(dev.user, genKey(t, "sixth")), 429)
		if p.Type != api.ProblemRateLimited {
			t.Fatalf("sixth link request: %s", p.Type)
		}
		// Ten minutes later they have expired (before and after the sweep).
		e.clock.advance(11 * time.Minute)
		var got api.LinkRequest
		e.call("GET", api.Path(api.PathLinkRequest, first.ID), "", nil, 200, &got)
		if got.State != store.LinkExpired {
			t.Fatalf("expired link request is %s", got.State)
		}
		e.refused("POST", api.Path(api.PathDeviceRefuse, first.ID), e.login(dev.key), nil, 409)
		if _, n, err := e.srv.Sweep(t.Context()); err != nil || n != maxOpenLinks {
			t.Fatalf("sweep: %d requests, %v", n, err)
		}
		var pd store.PendingDevice
		store.First(e.st.DB(t.Context()), &pd, "id = ?", first.ID)
		if pd.State != store.LinkExpired {
			t.Fatalf("swept pending device is %s", pd.State)
		}
		e.requestLink(dev.user, genKey(t, "sixth"))
	})
}

// TestDeviceRequestsReachEveryDevice: a link request is pushed (its id
// only) to every active device of the user and replayed on their event
// streams; another user's device neither sees nor answers it.
func TestDeviceRequestsReachEveryDevice(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev1 := e.newUser("alice")
	dev2 := e.addDevice(dev1)
	mallory := e.newUser("mallory")
	e.srv.waitPushes()
	pushed := len(e.pushes.all())
	events, stop := e.sse(dev1)
	defer stop()
	waitFor(t, func() bool { return e.hub.Subscribers(dev1.id) == 1 })

	nk := genKey(t, "new phone")
	var lr api.LinkRequest
	e.call("POST", api.PathLinkRequests, "", api.LinkRequestCreate{User: "alice", PublicKey: string(nk.Public().Armor()),
		PushKind: push.KindFCM, PushToken: "fcm-token-of-the-new-phone"}, 201, &lr)
	if lr.Code != keychain.Code(nk) || lr.Fingerprint != nk.Fingerprint() || lr.UserID != dev1.user {
		t.Fatalf("link request %+v", lr)
	}
	if got := nextEvent(t, events); got != lr.ID {
		t.Fatalf("pushed %s", got)
	}
	e.srv.waitPushes()
	calls := e.pushes.all()[pushed:]
	to := map[string]bool{}
	for _, c := range calls {
		if c.RequestID != lr.ID || c.Target.Token != "" {
			t.Fatalf("push %+v", c)
		}
		to[c.Target.DeviceID] = true
	}
	if len(calls) != 2 || !to[dev1.id] || !to[dev2.id] {
		t.Fatalf("pushes %+v, want one to each of alice's devices", calls)
	}
	// Replayed on a new stream; listed for both devices, not for mallory.
	events2, stop2 := e.sse(dev2)
	defer stop2()
	if got := nextEvent(t, events2); got != lr.ID {
		t.Fatalf("replayed %s", got)
	}
	for _, d := range []*device{dev1, dev2} {
		det := e.deviceRequest(d, lr.ID)
		if det.NewDeviceKey == "" || det.NewDeviceFingerprint != nk.Fingerprint() || det.State != api.RequestOpen {
			t.Fatalf("detail %+v", det)
		}
	}
	var list api.RequestList
	e.call("GET", api.PathDeviceRequests, mallory.token, nil, 200, &list)
	if len(list.Requests) != 0 {
		t.Fatalf("mallory sees %+v", list.Requests)
	}
	e.refused("GET", api.Path(api.PathDeviceRequest, lr.ID), mallory.token, nil, 404)
	e.refused("POST", api.Path(api.PathDeviceRefuse, lr.ID), mallory.token, nil, 404)
	// Once added, the new device has the push target it asked for.
	e.call("POST", api.Path(api.PathDeviceLink, lr.ID), dev2.token, e.linkAnswer(dev2, nk, dev2.key), 200, nil)
	e.call("GET", api.Path(api.PathLinkRequest, lr.ID), "", nil, 200, &lr)
	var d store.Device
	store.First(e.st.DB(t.Context()), &d, "id = ?", lr.DeviceID)
	if d.Status != store.DeviceActive || d.PushKind != push.KindFCM || d.PushToken != "fcm-token-of-the-new-phone" || d.UserID != dev1.user {
		t.Fatalf("new device row %+v", d)
	}
	e.call("GET", api.PathDeviceRequests, dev1.token, nil, 200, &list)
	if len(list.Requests) != 0 {
		t.Fatalf("answered request still listed: %+v", list.Requests)
	}
}

// TestConcurrentChainLinks: two devices extend the chain at the same time
// on the same head, and two answer the same link request: one wins each
// race, the others get 409, and the chain stays one sequence.
func TestConcurrentChainLinks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		dev1 := e.newUser("alice")
		devs := []*device{dev1, e.addDevice(dev1), e.addDevice(dev1), e.addDevice(dev1)}
		// Each device sets its own recovery key on the same head.
		var bodies []any
		var tokens []string
		for _, d := range devs {
			bodies = append(bodies, e.link(d, statement.ActionSetRecovery, genKey(t, "recovery").Public(), d.key))
			tokens = append(tokens, d.token)
		}
		if count := e.race(api.PathDeviceChain, bodies, tokens); count[200] != 1 || count[409] != len(devs)-1 {
			t.Fatalf("chain race: %v", count)
		}
		// Every device answers the same link request.
		lr := e.requestLink(dev1.user, genKey(t, "new"))
		nk, _ := envelope.ParseKey([]byte(e.deviceRequest(dev1, lr.ID).NewDeviceKey))
		bodies = bodies[:0]
		for _, d := range devs {
			bodies = append(bodies, e.linkAnswer(d, nk, d.key))
		}
		if count := e.race(api.Path(api.PathDeviceLink, lr.ID), bodies, tokens); count[200] != 1 || count[409] != len(devs)-1 {
			t.Fatalf("link race: %v", count)
		}
		var links, logs int64
		e.st.DB(t.Context()).Model(&store.ChainLink{}).Count(&links)
		e.st.DB(t.Context()).Model(&store.LogEntry{}).Where("kind = ?", store.LogChainLink).Count(&logs)
		if links != 6 || logs != 6 {
			t.Fatalf("%d links, %d log entries, want 6", links, logs)
		}
		lab := e.newParty("lab")
		if _, st := e.partyKeys(lab, dev1.user); st.Len() != 6 || len(st.Devices()) != 5 || st.Recovery() == nil {
			t.Fatal("the chain after the races")
		}
	})
}
