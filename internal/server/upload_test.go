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
	e.wantProblem(resp, data, 409)
	e.unchanged(before)
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
