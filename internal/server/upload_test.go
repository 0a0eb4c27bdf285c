package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

func TestAttackUploads(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.MaxRecordSize = 1 << 20 })
	dev := e.newUser("alice")
	dev2 := e.addDevice(dev)
	mallory := e.newUser("mallory")
	lab := e.newParty("lab")
	other := e.newParty("other")
	plaintext := []byte("a record")
	keys := e.recipientKeys(lab, dev.user)
	if len(keys) != 2 {
		t.Fatalf("%d keys", len(keys))
	}

	mk := func(mod func(u *upload)) *upload {
		u := e.prepare(lab, dev.user, plaintext, envelope.Compat)
		if mod != nil {
			mod(u)
		}
		return u
	}
	resealTo := func(to ...*envelope.Key) func(u *upload) {
		return func(u *upload) {
			u.body, u.digest = sealMsg(t, envelope.Compat, plaintext, to...)
			e.sign(lab, dev.user, u)
		}
	}
	cases := []struct {
		name   string
		u      *upload
		status int
	}{
		{"malformed OpenPGP body", mk(func(u *upload) { u.body = []byte("not openpgp at all"); e.sign(lab, dev.user, u) }), 422},
		{"truncated body", mk(func(u *upload) {
			u.body = u.body[:len(u.body)-10]
			d := envelope.NewDigester()
			m, _ := envelope.Split(bytes.NewReader(u.body))
			io.Copy(d, m.Data)
			u.digest = d.Digest()
			e.sign(lab, dev.user, u)
		}), 422},
		{"message to another user's key", mk(resealTo(mallory.key.Public())), 422},
		{"missing device key packet", mk(resealTo(keys[0])), 422},
		{"extra recipient", mk(resealTo(keys[0], keys[1], mallory.key.Public())), 422},
		{"duplicate recipient", mk(resealTo(keys[0], keys[0], keys[1])), 422},
		{"private metadata to another key", mk(func(u *upload) {
			u.private, _ = sealMsg(t, envelope.Compat, []byte(`{"title":"x"}`), mallory.key.Public())
			e.sign(lab, dev.user, u)
		}), 422},
		{"statement with wrong digest", mk(func(u *upload) { u.digest.SHA256[0] ^= 1; e.sign(lab, dev.user, u); u.digest.SHA256[0] ^= 1 }), 422},
		{"statement with wrong metadata", mk(func(u *upload) { e.sign(lab, dev.user, u); u.meta = []byte(`{"content_type":"text/plain","size":1}`) }), 422},
		{"statement by another party", mk(func(u *upload) { e.sign(other, dev.user, u) }), 422},
		{"signature by another key", mk(func(u *upload) { u.sig = mustSign(t, u.stmt, other.key) }), 422},
		{"statement for another user", mk(func(u *upload) { e.sign(lab, mallory.user, u) }), 422},
		{"unknown metadata field", mk(func(u *upload) {
			u.meta = []byte(`{"content_type":"a/b","size":1,"title":"leak"}`)
			e.sign(lab, dev.user, u)
		}), 400},
		{"invalid metadata JSON", mk(func(u *upload) { u.meta = []byte(`{"content_type":`) }), 400},
		{"parts out of order", mk(func(u *upload) {
			u.parts = []string{api.PartBody, api.PartMetadata, api.PartStatement, api.PartSignature}
		}), 400},
		{"missing signature", mk(func(u *upload) { u.parts = []string{api.PartMetadata, api.PartBody, api.PartStatement} }), 400},
		{"extra part", mk(func(u *upload) {
			u.parts = []string{api.PartMetadata, api.PartPrivate, api.PartBody, api.PartStatement, api.PartSignature, "extra"}
		}), 400},
		{"oversized body", func() *upload {
			big := e.prepare(lab, dev.user, randBytes(2<<20), envelope.Compat)
			return big
		}(), 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snap()
			resp, data := e.send(lab, dev.user, c.u)
			e.wantProblem(resp, data, c.status)
			e.unchanged(before)
		})
	}
	t.Run("oversized chunked body", func(t *testing.T) {
		before := e.snap()
		u := e.prepare(lab, dev.user, randBytes(3<<20), envelope.Compat)
		ct, body := u.multipart()
		req, _ := http.NewRequest("POST", e.ts.URL+api.Path(api.PathUserRecords, dev.user), io.MultiReader(bytes.NewReader(body)))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+lab.token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			e.wantProblem(resp, data, 413)
		}
		waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 0 })
		e.unchanged(before)
	})
	t.Run("not multipart", func(t *testing.T) {
		before := e.snap()
		resp, data := e.do("POST", api.Path(api.PathUserRecords, dev.user), lab.token, `{"a":1}`)
		e.wantProblem(resp, data, 415)
		e.unchanged(before)
	})
	t.Run("device token cannot upload", func(t *testing.T) {
		before := e.snap()
		u := mk(nil)
		lab2 := *lab
		lab2.token = dev.token
		resp, data := e.send(&lab2, dev.user, u)
		e.wantProblem(resp, data, 401)
		e.unchanged(before)
	})
	_ = dev2
	// And a good one still works; the same ciphertext again is a conflict.
	u := mk(nil)
	resp, data := e.send(lab, dev.user, u)
	if resp.StatusCode != 201 {
		t.Fatalf("good upload: %d %s", resp.StatusCode, data)
	}
	before := e.snap()
	resp, data = e.send(lab, dev.user, u)
	e.wantProblem(resp, data, 409)
	e.unchanged(before)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	u := e.prepare(lab, dev.user, []byte("once"), envelope.Compat)
	u.idem = "order-42"
	resp, data := e.send(lab, dev.user, u)
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	var first, second api.Record
	json.Unmarshal(data, &first)
	before := e.snap()
	resp, data = e.send(lab, dev.user, u)
	if resp.StatusCode != 200 {
		t.Fatalf("retry: %d %s", resp.StatusCode, data)
	}
	json.Unmarshal(data, &second)
	if first.ID != second.ID {
		t.Fatal("retry made another record")
	}
	e.unchanged(before)
	// Same key, other content.
	u2 := e.prepare(lab, dev.user, []byte("different"), envelope.Compat)
	u2.idem = "order-42"
	resp, data = e.send(lab, dev.user, u2)
	p := e.wantProblem(resp, data, 409)
	e.unchanged(before)
	// The 409 names the record the key made, so a client that sealed the
	// record again after a lost answer learns which record it has.
	if p.Type != api.ProblemIdempotencyKeyReused || p.RecordID != first.ID {
		t.Fatalf("conflict does not name record %s: %s", first.ID, data)
	}
	// A client can also ask before it uploads again.
	var list api.RecordList
	e.call("GET", api.PathPartyRecords+"?idempotency_key=order-42", lab.token, nil, 200, &list)
	if len(list.Records) != 1 || list.Records[0].ID != first.ID {
		t.Fatalf("lookup by key: %+v", list.Records)
	}
	e.call("GET", api.PathPartyRecords+"?idempotency_key=order-43", lab.token, nil, 200, &list)
	if len(list.Records) != 0 {
		t.Fatalf("lookup by an unused key: %+v", list.Records)
	}
	e.call("GET", api.PathPartyRecords+"?idempotency_key=", lab.token, nil, 400, nil)
	// Keys are per party.
	bank := e.newParty("bank")
	e.call("GET", api.PathPartyRecords+"?idempotency_key=order-42", bank.token, nil, 200, &list)
	if len(list.Records) != 0 {
		t.Fatal("another party's key found a record")
	}
}

// TestAccessIdempotencyKey: an access request retried with the same
// Idempotency-Key (its answer was lost) gets the request made first, with
// 200, and puts no second prompt on the phone: no new request, no push.
// The same key for another record or purpose is a 409 naming the first.
func TestAccessIdempotencyKey(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("x"))
	e.approve(dev, rec.ID)
	path := api.Path(api.PathRecordAccess, rec.ID)
	body := api.AccessRequest{Purpose: "audit", ExpiresIn: 600}
	key := []string{api.HeaderIdempotencyKey, "access-7"}

	resp, data := e.do("POST", path, lab.token, body, key...)
	if resp.StatusCode != 202 {
		t.Fatalf("first: %d %s", resp.StatusCode, data)
	}
	var first, again api.AccessResponse
	json.Unmarshal(data, &first)
	e.srv.waitPushes()
	pushes := len(e.pushes.all())
	before := e.snap()
	resp, data = e.do("POST", path, lab.token, body, key...)
	if resp.StatusCode != 200 {
		t.Fatalf("retry: %d %s", resp.StatusCode, data)
	}
	json.Unmarshal(data, &again)
	if again != first {
		t.Fatalf("retry answered %+v, first %+v", again, first)
	}
	e.unchanged(before)
	e.srv.waitPushes()
	if n := len(e.pushes.all()); n != pushes {
		t.Fatalf("the retry pushed %d more prompts", n-pushes)
	}

	resp, data = e.do("POST", path, lab.token, api.AccessRequest{Purpose: "something else"}, key...)
	p := e.wantProblem(resp, data, 409)
	if p.Type != api.ProblemIdempotencyKeyReused || p.RequestID != first.RequestID || p.RecordID != rec.ID {
		t.Fatalf("conflict: %s", data)
	}
	e.unchanged(before)
	resp, data = e.do("POST", path, lab.token, body, api.HeaderIdempotencyKey, "bad key!")
	e.wantProblem(resp, data, 400)
	// Without a key, every call is a new request (as before).
	e.call("POST", path, lab.token, body, 202, nil)
}

// TestUploadKilledMidStream: the client vanishes half-way through the body;
// no record, no blob, no temporary file remain.
func TestUploadKilledMidStream(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	u := e.prepare(lab, dev.user, randBytes(4<<20), envelope.Compat)
	ct, body := u.multipart()
	before := e.snap()

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		api.Path(api.PathUserRecords, dev.user), lab.token, ct, len(body))
	w.Write(body[:len(body)/2])
	w.Flush()
	// The server is streaming into a temporary file now.
	waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 1 })
	conn.Close()
	waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 0 })
	e.unchanged(before)
	var n int64
	e.st.DB(t.Context()).Model(&store.Record{}).Count(&n)
	if n != 0 {
		t.Fatal("a record was stored")
	}
}
