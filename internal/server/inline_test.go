package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestInlineCiphertexts: a data packet of at most InlineMax bytes is kept
// in the database, a larger one in the blob store (the two sides of the
// boundary, by one byte); either way the party downloads a message that
// opens to the plaintext, ranges included, and a second upload of the
// same ciphertext is refused wherever the first is kept.
func TestInlineCiphertexts(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			// The data packet's size for a plaintext, from a trial upload
			// that is never sent.
			probe := newEnv(t, b, nil)
			pd := probe.newUser("probe")
			size := probe.prepare(probe.newParty("probe"), pd.user, make([]byte, 3000), envelope.Compat).digest.Size

			e := newEnv(t, b, func(c *Config) { c.InlineMax = size })
			dev := e.newUser("alice")
			lab, bank := e.newParty("lab"), e.newParty("bank")
			for _, c := range []struct {
				name   string
				n      int
				inline bool
			}{{"at the limit", 3000, true}, {"one byte over", 3001, false}} {
				t.Run(c.name, func(t *testing.T) {
					blobs0, inline0 := e.ciphertexts()
					plaintext := randBytes(c.n)
					u := e.prepare(lab, dev.user, plaintext, envelope.Compat)
					resp, data := e.send(lab, dev.user, u)
					if resp.StatusCode != http.StatusCreated {
						t.Fatalf("upload: %d %s", resp.StatusCode, data)
					}
					blobs, inline := e.ciphertexts()
					if got := inline - inline0; (got == 1) != c.inline || blobs-blobs0+got != 1 {
						t.Fatalf("data packet of %d bytes (limit %d): %d more blobs, %d more in the database", u.digest.Size, size, blobs-blobs0, got)
					}
					var rec api.Record
					e.call("GET", resp.Header.Get("Location"), lab.token, nil, 200, &rec)

					// The same ciphertext again (a replay of the upload).
					before := e.snap()
					resp, data = e.send(lab, dev.user, u)
					e.wantProblem(resp, data, http.StatusConflict)
					e.unchanged(before)

					e.approve(dev, rec.ID)
					e.grantAccess(dev, bank, rec.ID, 600)
					resp, full := e.do("GET", api.Path(api.PathRecordContent, rec.ID), bank.token, nil)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("download: %d %s", resp.StatusCode, full)
					}
					r, err := envelope.Open(bytes.NewReader(full), bank.key)
					if err != nil {
						t.Fatal(err)
					}
					if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, plaintext) {
						t.Fatalf("the opened record differs (%v)", err)
					}
					req, _ := http.NewRequest("GET", e.ts.URL+api.Path(api.PathRecordContent, rec.ID), nil)
					req.Header.Set("Authorization", "Bearer "+bank.token)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(full)-100))
					part, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					tail, _ := io.ReadAll(part.Body)
					part.Body.Close()
					if part.StatusCode != http.StatusPartialContent || !bytes.Equal(tail, full[len(full)-100:]) {
						t.Fatalf("range: %d, %d bytes", part.StatusCode, len(tail))
					}
				})
			}
		})
	}
}

// TestExpiryDeletesInlineCiphertext: a small record that expires pending
// loses its ciphertext from the database, as a blob-stored one loses its
// file.
func TestExpiryDeletesInlineCiphertext(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	rec, _ := e.submit(lab, dev.user, []byte("never answered"))
	if _, inline := e.ciphertexts(); inline != 1 {
		t.Fatalf("%d ciphertexts in the database, want 1", inline)
	}
	e.clock.advance(e.srv.cfg.PendingTTL + 1)
	if r, _, err := e.srv.Sweep(t.Context()); err != nil || r != 1 {
		t.Fatalf("sweep: %d records, %v", r, err)
	}
	if _, inline := e.ciphertexts(); inline != 0 {
		t.Fatal("the expired record's ciphertext is still in the database")
	}
	if got, err := e.st.FindRecord(t.Context(), rec.ID); err != nil || got.State != store.StateExpired {
		t.Fatalf("record %+v, %v", got, err)
	}
}
