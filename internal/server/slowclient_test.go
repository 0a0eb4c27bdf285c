package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// rawConn sends a request's head (hdr are name, value pairs) and the first
// bytes of its body over a new connection, which the test closes.
func (e *env) rawConn(method, path string, hdr []string, body []byte) net.Conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.ts.URL, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: keyholder\r\n", method, path)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := conn.Write(b.Bytes()); err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// drip writes data one byte every interval until it is all sent or the
// server closes the connection; the returned function stops it and waits.
func drip(conn net.Conn, data []byte, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, c := range data {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			if _, err := conn.Write([]byte{c}); err != nil {
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// response reads the answer on conn, failing the test if none arrives
// within d, and reports whether the server then closed the connection
// (only asked for when it closes at once: on a connection kept alive it
// takes d to tell).
func (e *env) response(conn net.Conn, d time.Duration, askClosed bool) (resp *http.Response, data []byte, closed bool) {
	e.t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		e.t.Fatalf("no answer within %s: %v", d, err)
	}
	data, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		e.t.Fatalf("reading the answer: %v", err)
	}
	if !askClosed {
		return resp, data, false
	}
	// EOF, or a reset if the client was still sending.
	_, err = br.ReadByte()
	ne, isNetErr := err.(net.Error)
	return resp, data, err != nil && !(isNetErr && ne.Timeout())
}

// TestSlowJSONBody: a JSON body must arrive whole within the body timeout;
// a client that drips it (the auth routes take no token) is answered 408
// and cut off, and nothing is written.
func TestSlowJSONBody(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, sqlite(), func(c *Config) { c.BodyTimeout = timeout })
	fp := genKey(t, "k").Fingerprint()
	body, _ := json.Marshal(api.ChallengeRequest{Fingerprint: fp})
	nonces := func() int64 {
		var n int64
		e.st.DB(t.Context()).Model(&store.Nonce{}).Count(&n)
		return n
	}
	jsonHdr := func(n int) []string {
		return []string{"Content-Type", "application/json", "Content-Length", fmt.Sprint(n)}
	}
	wantTimeout := func(t *testing.T, conn net.Conn, start time.Time) {
		t.Helper()
		resp, data, closed := e.response(conn, 5*time.Second, true)
		if p := e.wantProblem(resp, data, http.StatusRequestTimeout); p.Type != api.ProblemRequestTimeout || !strings.Contains(p.Detail, "300ms") {
			t.Fatalf("problem %+v", p)
		}
		if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
			t.Fatalf("answered after %s", d)
		}
		if !closed {
			t.Fatal("the connection stays open")
		}
	}
	before, n0 := e.snap(), nonces()

	t.Run("one byte at a time", func(t *testing.T) {
		start := time.Now()
		conn := e.rawConn("POST", api.PathAuthChallenge, jsonHdr(len(body)), body[:1])
		defer drip(conn, body[1:], 50*time.Millisecond)()
		wantTimeout(t, conn, start)
	})
	t.Run("headers and then nothing", func(t *testing.T) {
		start := time.Now()
		conn := e.rawConn("POST", api.PathAuthToken, jsonHdr(200), nil)
		wantTimeout(t, conn, start)
	})
	t.Run("chunked, one byte at a time", func(t *testing.T) {
		var chunks bytes.Buffer
		for _, c := range body {
			fmt.Fprintf(&chunks, "1\r\n%c\r\n", c)
		}
		chunks.WriteString("0\r\n\r\n")
		start := time.Now()
		conn := e.rawConn("POST", api.PathEnroll, []string{"Content-Type", "application/json", "Transfer-Encoding", "chunked"}, nil)
		defer drip(conn, chunks.Bytes(), 10*time.Millisecond)()
		wantTimeout(t, conn, start)
	})
	// A route that refuses the request before reading its body: the HTTP
	// server drains the body before it answers, under the same deadline.
	t.Run("refused before the body is read", func(t *testing.T) {
		start := time.Now()
		conn := e.rawConn("POST", api.PathAdminUsers, jsonHdr(2000), []byte(`{`))
		defer drip(conn, bytes.Repeat([]byte(" "), 1999), 20*time.Millisecond)()
		resp, data, closed := e.response(conn, 5*time.Second, true)
		e.wantProblem(resp, data, http.StatusUnauthorized)
		if d := time.Since(start); d > timeout+2*time.Second || !closed {
			t.Fatalf("answered after %s, connection closed: %v", d, closed)
		}
	})
	e.unchanged(before)
	if nonces() != n0 {
		t.Fatal("a timed-out challenge wrote a nonce")
	}

	// A body that arrives in pieces, in time, is fine; and the deadline
	// is lifted once it is read: the next request on the connection may
	// come later than the timeout.
	t.Run("slow but in time, then keep-alive", func(t *testing.T) {
		conn := e.rawConn("POST", api.PathAuthChallenge, jsonHdr(len(body)), body[:5])
		time.Sleep(timeout / 3)
		conn.Write(body[5:10])
		time.Sleep(timeout / 3)
		conn.Write(body[10:])
		resp, data, _ := e.response(conn, 5*time.Second, false)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, data)
		}
		time.Sleep(2 * timeout)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: keyholder\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", api.PathAuthChallenge, len(body), body)
		if resp, data, _ := e.response(conn, 5*time.Second, false); resp.StatusCode != 200 {
			t.Fatalf("second request: %d %s", resp.StatusCode, data)
		}
	})
}

// TestSlowUpload: an upload's body must make progress: one that sends
// nothing for the idle timeout is answered 408 and leaves no record, blob
// or temporary file, and its slot is free again; one that is slow but
// steady takes as long as it needs.
func TestSlowUpload(t *testing.T) {
	const idle = 300 * time.Millisecond
	// Every upload goes to a blob (InlineMax -1), whose temporary file
	// shows that the server is reading the data.
	e := newEnv(t, sqlite(), func(c *Config) { c.UploadIdleTimeout, c.InlineMax = idle, -1 })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	path := api.Path(api.PathUserRecords, dev.user)
	u := e.prepare(lab, dev.user, randBytes(256<<10), envelope.Compat)
	ct, body := u.multipart()
	hdr := []string{"Authorization", "Bearer " + lab.token, "Content-Type", ct, "Content-Length", fmt.Sprint(len(body))}
	before := e.snap()
	wantTimeout := func(t *testing.T, conn net.Conn) {
		t.Helper()
		resp, data, closed := e.response(conn, 5*time.Second, true)
		if p := e.wantProblem(resp, data, http.StatusRequestTimeout); p.Type != api.ProblemRequestTimeout || !strings.Contains(p.Detail, "sent nothing for 300ms") {
			t.Fatalf("problem %+v", p)
		}
		if !closed {
			t.Fatal("the connection stays open")
		}
		waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 0 })
		waitFor(t, func() bool { return e.srv.uploadSlots.inUse(lab.id) == 0 })
		e.unchanged(before)
	}

	t.Run("stalled in the data", func(t *testing.T) {
		conn := e.rawConn("POST", path, hdr, body[:len(body)/2])
		waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 1 })
		wantTimeout(t, conn)
	})
	t.Run("stalled before the body", func(t *testing.T) {
		wantTimeout(t, e.rawConn("POST", path, hdr, nil))
	})
	t.Run("stalled in the metadata part", func(t *testing.T) {
		i := bytes.Index(body, u.meta)
		wantTimeout(t, e.rawConn("POST", path, hdr, body[:i+5]))
	})
	t.Run("stalled in the signature part", func(t *testing.T) {
		wantTimeout(t, e.rawConn("POST", path, hdr, body[:len(body)-100]))
	})
	t.Run("slow but steady", func(t *testing.T) {
		// 8 pieces, one every idle/3: longer than the idle timeout in all.
		start := time.Now()
		conn := e.rawConn("POST", path, hdr, nil)
		step := len(body)/8 + 1
		for i := 0; i < len(body); i += step {
			time.Sleep(idle / 3)
			if _, err := conn.Write(body[i:min(i+step, len(body))]); err != nil {
				t.Fatal(err)
			}
		}
		resp, data, _ := e.response(conn, 5*time.Second, false)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, data)
		}
		if d := time.Since(start); d < 2*idle {
			t.Fatalf("took only %s", d)
		}
	})
}

// TestUploadsInFlightPerParty: a party with MaxUploadsPerParty stalled
// uploads gets 429 for one more, at once, before its body is read and
// without a temporary file; other parties are not affected; each slot is
// given back however its upload ends.
func TestUploadsInFlightPerParty(t *testing.T) {
	const max = 3
	e := newEnv(t, sqlite(), func(c *Config) { c.MaxUploadsPerParty, c.UploadIdleTimeout, c.InlineMax = max, 10*time.Second, -1 })
	dev := e.newUser("alice")
	lab, bank := e.newParty("lab"), e.newParty("bank")
	path := api.Path(api.PathUserRecords, dev.user)
	u := e.prepare(lab, dev.user, randBytes(1<<20), envelope.Compat)
	ct, body := u.multipart()
	hdr := []string{"Authorization", "Bearer " + lab.token, "Content-Type", ct, "Content-Length", fmt.Sprint(len(body))}
	before := e.snap()

	var stalled []net.Conn
	for i := 0; i < max; i++ {
		stalled = append(stalled, e.rawConn("POST", path, hdr, body[:len(body)/2]))
		waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == i+1 })
	}
	// One more: the body never comes, yet the answer does, at once.
	conn := e.rawConn("POST", path, hdr, nil)
	resp, data, _ := e.response(conn, 2*time.Second, false)
	if p := e.wantProblem(resp, data, http.StatusTooManyRequests); p.Type != api.ProblemRateLimited || !strings.Contains(p.Detail, "3 uploads in progress") {
		t.Fatalf("problem %+v", p)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	if _, tm, _ := e.blobs.Count(); tm != max {
		t.Fatalf("%d temporary files, want %d", tm, max)
	}
	// Through the SDK's path too (a complete body, refused unread).
	resp, data = e.send(lab, dev.user, e.prepare(lab, dev.user, []byte("x"), envelope.Compat))
	e.wantProblem(resp, data, http.StatusTooManyRequests)

	// Another party uploads meanwhile.
	if _, tm, _ := e.blobs.Count(); tm != max {
		t.Fatalf("%d temporary files", tm)
	}
	other := e.prepare(bank, dev.user, []byte("bank statement"), envelope.Compat)
	if resp, data := e.send(bank, dev.user, other); resp.StatusCode != http.StatusCreated {
		t.Fatalf("another party: %d %s", resp.StatusCode, data)
	}
	afterBank := e.snap()

	// A client that goes away frees its slot.
	stalled[0].Close()
	waitFor(t, func() bool { return e.srv.uploadSlots.inUse(lab.id) == max-1 })
	// Uploads that fail (400) or succeed (201) give theirs back too.
	for i := 0; i < max+1; i++ {
		bad := e.prepare(lab, dev.user, []byte("x"), envelope.Compat)
		bad.meta = []byte(`{"content_type":`)
		resp, data := e.send(lab, dev.user, bad)
		e.wantProblem(resp, data, http.StatusBadRequest)
	}
	rec, _ := e.submit(lab, dev.user, []byte("results"))
	if e.srv.uploadSlots.inUse(lab.id) != max-1 {
		t.Fatalf("%d slots in use", e.srv.uploadSlots.inUse(lab.id))
	}
	for _, c := range stalled[1:] {
		c.Close()
	}
	waitFor(t, func() bool { return e.srv.uploadSlots.inUse(lab.id) == 0 })
	waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 0 })

	// Nothing of the refused and abandoned uploads is left: the tables
	// differ from before by the bank's record and lab's one good upload.
	after := e.snap()
	for table, n := range after.rows {
		if want := afterBank.rows[table] + (afterBank.rows[table] - before.rows[table]); n != want {
			t.Errorf("table %s: %d rows, want %d", table, n, want)
		}
	}
	if after.blobs != before.blobs+2 || after.temps != 0 {
		t.Errorf("%d blobs and %d temporary files, want %d and 0", after.blobs, after.temps, before.blobs+2)
	}
	_ = rec
}

// TestDuplicateJSONKeys: a key twice in one object of any JSON body, at any
// depth, is refused (400 invalid-json naming the key): a parser that keeps
// the first value would read another request than the server. That
// includes the upload's public metadata, which the device shows.
func TestDuplicateJSONKeys(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("results"))
	det := e.approve(dev, rec.ID)
	var ar api.AccessResponse
	e.call("POST", api.Path(api.PathRecordAccess, rec.ID), lab.token, api.AccessRequest{Purpose: "check"}, 202, &ar)
	access := e.findRequest(dev, store.KindAccess, rec.ID)
	_, pending := e.submit(lab, dev.user, []byte("other results"))
	_ = pending
	before := e.snap()

	check := func(t *testing.T, resp *http.Response, data []byte, key string) {
		t.Helper()
		p := e.wantProblem(resp, data, http.StatusBadRequest)
		if p.Type != api.ProblemInvalidJSON || !strings.Contains(p.Detail, fmt.Sprintf("duplicate key %q", key)) {
			t.Fatalf("problem %+v", p)
		}
		e.unchanged(before)
	}
	fp := dev.key.Fingerprint()
	for _, c := range []struct {
		name, method, path, token, body, key string
	}{
		{"challenge", "POST", api.PathAuthChallenge, "", `{"fingerprint":"` + fp + `","fingerprint":"` + lab.key.Fingerprint() + `"}`, "fingerprint"},
		{"challenge, escaped", "POST", api.PathAuthChallenge, "", `{"fingerprint":"` + fp + `","\u0066ingerprint":"x"}`, "fingerprint"},
		{"challenge, other case", "POST", api.PathAuthChallenge, "", `{"fingerprint":"` + fp + `","FingerPrint":"x"}`, "FingerPrint"},
		{"challenge, nested", "POST", api.PathAuthChallenge, "", `{"fingerprint":"` + fp + `","x":[{"a":{"b":1,"b":2}}]}`, "b"},
		{"token", "POST", api.PathAuthToken, "", `{"fingerprint":"a","nonce":"n","signature":"s","nonce":"m"}`, "nonce"},
		{"enroll", "POST", api.PathEnroll, "", `{"code":"a","public_key":"k","code":"b"}`, "code"},
		{"create user", "POST", api.PathAdminUsers, testAdminToken, `{"handle":"bob","handle":"carol"}`, "handle"},
		{"create party", "POST", api.PathAdminParties, testAdminToken, `{"name":"a","public_key":"k","name":"b"}`, "name"},
		{"enroll info", "POST", api.PathEnrollInfo, "", `{"code":"a","code":"b"}`, "code"},
		{"link request", "POST", api.PathLinkRequests, "", `{"user":"` + dev.user + `","public_key":"k","user":"bob"}`, "user"},
		{"chain link", "POST", api.PathDeviceChain, dev.token, `{"statement":"a","signature":"b","statement":"c"}`, "statement"},
		{"access", "POST", api.Path(api.PathRecordAccess, rec.ID), lab.token, `{"purpose":"loan","purpose":"audit"}`, "purpose"},
		{"approve", "POST", api.Path(api.PathDeviceApprove, det.ID), dev.token, `{"statement":"a","signature":"b","statement":"c"}`, "statement"},
		{"grant", "POST", api.Path(api.PathDeviceGrant, access.ID), dev.token, `{"key_packet":"","statement":"a","signature":"b","signature":"c"}`, "signature"},
		{"refuse", "POST", api.Path(api.PathDeviceRefuse, access.ID), dev.token, `{"x":{"y":1,"y":2}}`, "y"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, data := e.do(c.method, c.path, c.token, c.body)
			check(t, resp, data, c.key)
		})
	}

	// The upload's public metadata, signed into a submission statement
	// like a real one.
	for _, c := range []struct{ name, meta, key string }{
		{"metadata", `{"content_type":"text/plain","size":5,"content_type":"application/pdf"}`, "content_type"},
		{"metadata, other case", `{"content_type":"text/plain","size":5,"Content_Type":"application/pdf"}`, "Content_Type"},
		{"metadata, nested", `{"content_type":"text/plain","size":5,"purpose":"x","more":{"list":[{"k":1,"k":2}]}}`, "k"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := e.prepare(lab, dev.user, []byte("hello"), envelope.Compat)
			u.meta = []byte(c.meta)
			e.sign(lab, dev.user, u)
			resp, data := e.send(lab, dev.user, u)
			check(t, resp, data, c.key)
		})
	}
}

// TestPartHeaderLimit: a part's header block is bounded (8 KiB), whichever
// part it is on; a larger one is refused (400 naming the limit) and
// nothing is stored.
func TestPartHeaderLimit(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	pad := func(n int) textproto.MIMEHeader { return textproto.MIMEHeader{"X-Padding": {strings.Repeat("a", n)}} }
	for _, c := range []struct {
		name, part string
		size       int
	}{
		{"900 KiB on the metadata", api.PartMetadata, 900 << 10},
		{"900 KiB on the body", api.PartBody, 900 << 10},
		{"900 KiB on the signature", api.PartSignature, 900 << 10},
		{"just over the limit", api.PartPrivate, 8 << 10},
		{"a little more", api.PartStatement, 11 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.snap()
			u := e.prepare(lab, dev.user, randBytes(64<<10), envelope.Compat)
			u.headers = map[string]textproto.MIMEHeader{c.part: pad(c.size)}
			resp, data := e.send(lab, dev.user, u)
			if p := e.wantProblem(resp, data, http.StatusBadRequest); p.Detail != "the headers of a part exceed 8192 bytes" {
				t.Fatalf("problem %+v", p)
			}
			waitFor(t, func() bool { _, tm, _ := e.blobs.Count(); return tm == 0 })
			e.unchanged(before)
		})
	}
	// The server stops reading a header block at the limit (plus what
	// the multipart reader buffers), long before it has 900 KiB of it.
	t.Run("refused before it is all read", func(t *testing.T) {
		before := e.snap()
		u := e.prepare(lab, dev.user, []byte("results"), envelope.Compat)
		u.headers = map[string]textproto.MIMEHeader{api.PartMetadata: pad(900 << 10)}
		ct, body := u.multipart()
		sent := bytes.Index(body, []byte("X-Padding: ")) + 20<<10
		conn := e.rawConn("POST", api.Path(api.PathUserRecords, dev.user),
			[]string{"Authorization", "Bearer " + lab.token, "Content-Type", ct, "Content-Length", fmt.Sprint(len(body))}, body[:sent])
		resp, data, _ := e.response(conn, 2*time.Second, false)
		if p := e.wantProblem(resp, data, http.StatusBadRequest); p.Detail != "the headers of a part exceed 8192 bytes" {
			t.Fatalf("problem %+v", p)
		}
		e.unchanged(before)
	})
	t.Run("several headers within the limit", func(t *testing.T) {
		u := e.prepare(lab, dev.user, randBytes(64<<10), envelope.Compat)
		u.headers = map[string]textproto.MIMEHeader{}
		for _, part := range []string{api.PartMetadata, api.PartPrivate, api.PartBody, api.PartStatement, api.PartSignature} {
			u.headers[part] = textproto.MIMEHeader{"X-A": {strings.Repeat("a", 3000)}, "X-B": {strings.Repeat("b", 3000)}, "Content-Type": {"application/octet-stream"}}
		}
		if resp, data := e.send(lab, dev.user, u); resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, data)
		}
	})
}
