package translog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/internal/witnesstest"
	"github.com/keyholder/keyholder/pkg/transparency"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func witnesses(t *testing.T, ws ...*witnesstest.Witness) []*Witness {
	t.Helper()
	var out []*Witness
	for _, w := range ws {
		pw, err := ParseWitness(w.URL + "=" + w.VKey)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pw)
	}
	return out
}

// TestWitnessed: checkpoints are served only once a quorum of real
// witnesses (litewitness) cosigned them; while the quorum is missing the
// older checkpoint and proofs for it are served.
func TestWitnessed(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, verifier := testSigner(t)
	logVKey := verifierKey(t, signer)
	w1 := witnesstest.Start(t, "witness.test/w1", testOrigin, logVKey)
	w2 := witnesstest.Start(t, "witness.test/w2", testOrigin, logVKey)
	ws := witnesses(t, w1, w2)
	lg, err := New(st, Config{Signer: signer, Witnesses: ws, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lg.Handler())
	defer srv.Close()

	user := store.NewID()
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, user, 0))
	if n, err := lg.Sequence(ctx); err != nil || n != 2 {
		t.Fatalf("Sequence = %d, %v", n, err)
	}
	var hp transparency.HistoryProof
	if code := getJSON(t, srv.URL+"/v1/log/users/"+user+"/chain", &hp); code != http.StatusNotFound {
		t.Fatalf("before the witnesses cosigned: %d, want 404", code)
	}
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if code := getJSON(t, srv.URL+"/v1/log/users/"+user+"/chain", &hp); code != http.StatusOK {
		t.Fatalf("after: %d", code)
	}
	requireCosigned(t, hp.Checkpoint, verifier, w1, w2)
	if w1.Size(t, testOrigin) != 2 || w2.Size(t, testOrigin) != 2 {
		t.Fatal("the witnesses did not record size 2")
	}
	v1 := verifyHistory(t, &hp, checkpointOf(t, hp.TreeProof, verifier), [32]byte{})

	// Growth: the witnesses take a consistency proof from 2.
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, user, 1))
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if w1.Size(t, testOrigin) != 4 {
		t.Fatalf("w1 at %d, want 4", w1.Size(t, testOrigin))
	}

	// A quorum the witnesses cannot reach: a third witness that is down.
	dead := witnesstest.Start(t, "witness.test/dead", testOrigin, logVKey)
	ws3 := append(witnesses(t, w1, w2), witnesses(t, dead)...)
	ws3[2].URL = "http://127.0.0.1:1"
	lg3, err := New(st, Config{Signer: signer, Witnesses: ws3, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, user, 2))
	if _, err := lg3.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lg3.Publish(ctx); err == nil || !strings.Contains(err.Error(), "2 of 3 cosignatures") {
		t.Fatalf("Publish without quorum = %v", err)
	}
	// Still the checkpoint of size 4, and a history proof against it
	// (the map as of size 4, though the map has moved on).
	srv3 := httptest.NewServer(lg3.Handler())
	defer srv3.Close()
	if code := getJSON(t, srv3.URL+"/v1/log/users/"+user+"/chain?from=2&after=1", &hp); code != http.StatusOK {
		t.Fatalf("history: %d", code)
	}
	cp := checkpointOf(t, hp.TreeProof, verifier)
	if cp.N != 4 || hp.Count != 2 {
		t.Fatalf("served size %d with %d entries; want the cosigned size 4 with 2", cp.N, hp.Count)
	}
	verifyHistory(t, &hp, cp, v1)
}

// TestWitnessRefusesRollback: an operator who rebuilds the log (a restored
// backup, a rewritten database) signs a tree the witnesses cannot accept.
func TestWitnessRefusesRollback(t *testing.T) {
	ctx := context.Background()
	signer, _ := testSigner(t)
	logVKey := verifierKey(t, signer)
	w := witnesstest.Start(t, "witness.test/w", testOrigin, logVKey)

	honest := storetest.Open(t, storetest.Backends()[0], nil)
	lg, _ := New(honest, Config{Signer: signer, Witnesses: witnesses(t, w), Logger: discard()})
	for range 3 {
		appendLeaves(t, honest, store.LogChainLink, chainLeaf(t, store.NewID(), 0))
	}
	lg.Sequence(ctx)
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		leaves int
		want   string
	}{
		{"rolled back (smaller tree)", 1, "beyond this log's"},
		{"forked (same size, other leaves)", 3, "witness.test/w: 422 Unprocessable Entity: bad consistency proof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forged := storetest.Open(t, storetest.Backends()[0], nil)
			fl, _ := New(forged, Config{Signer: signer, Witnesses: witnesses(t, w), Logger: discard()})
			for range tc.leaves {
				appendLeaves(t, forged, store.LogChainLink, chainLeaf(t, store.NewID(), 0))
			}
			fl.Sequence(ctx)
			err := fl.Publish(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Publish of a %s log = %v; want the witness to refuse", tc.name, err)
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if got := w.Size(t, testOrigin); got != 4 {
				t.Fatalf("witness moved to %d", got)
			}
		})
	}
}

func verifierKey(t *testing.T, s note.Signer) string {
	t.Helper()
	vk, ok := testVKeys[s]
	if !ok {
		t.Fatal("unknown test signer")
	}
	return vk
}

func requireCosigned(t *testing.T, signed string, log note.Verifier, ws ...*witnesstest.Witness) {
	t.Helper()
	vs := []note.Verifier{log}
	for _, w := range ws {
		v, err := fnote.NewVerifierForCosignatureV1(w.VKey)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open([]byte(signed), note.VerifierList(vs...))
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if len(n.Sigs) != 1+len(ws) {
		b, _ := json.Marshal(n.Sigs)
		t.Fatalf("checkpoint has %d verified signatures, want %d: %s", len(n.Sigs), 1+len(ws), b)
	}
}

// TestWitnessAnswerOnlyItsCosignature: a witness's answer is taken for
// its own verified cosignature lines only. A witness that adds a line in
// the log's name (a bad signature by a key clients know) would otherwise
// have keyholderd publish a checkpoint every client refuses; one that
// adds lines in other names would have it serve them to every reader.
func TestWitnessAnswerOnlyItsCosignature(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, _ := testSigner(t)
	logVKey := verifierKey(t, signer)
	w := witnesstest.Start(t, "witness.test/w1", testOrigin, logVKey)
	logHash := strings.SplitN(logVKey, "+", 3)[1]
	junk := func(name, hash string) string {
		h, err := hex.DecodeString(hash)
		if err != nil {
			t.Fatal(err)
		}
		return "— " + name + " " + base64.StdEncoding.EncodeToString(append(h, make([]byte, 64)...)) + "\n"
	}
	target, err := url.Parse(w.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		b = append(append([]byte(junk(testOrigin, logHash)), b...), junk("witness.test/other", "01020304")...)
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		r.Header.Del("Content-Length")
		return nil
	}
	ps := httptest.NewServer(proxy)
	defer ps.Close()
	pw, err := ParseWitness(ps.URL + "=" + w.VKey)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := New(st, Config{Signer: signer, Witnesses: []*Witness{pw}, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, store.NewID(), 0))
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	row, _, err := published(ctx, st.DB(ctx))
	if err != nil {
		t.Fatal(err)
	}
	v, err := transparency.NewVerifier(testOrigin, logVKey, []string{w.VKey}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(row.Note); err != nil {
		t.Fatalf("the published checkpoint does not verify: %v\n%s", err, row.Note)
	}
	if lines := strings.Count(string(row.Note), "\n— "); lines != 2 {
		t.Fatalf("the published checkpoint has %d signature lines, want the log's and the witness's:\n%s", lines, row.Note)
	}
}

// TestNewQuorum: a quorum outside 0 (all) to the witnesses configured is
// refused; a negative one would publish checkpoints no witness cosigned.
func TestNewQuorum(t *testing.T) {
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, _ := testSigner(t)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ParseWitness("https://witness.test=" + witnesstest.VKey("witness.test/w1", pub))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []int{-1, 2} {
		if _, err := New(st, Config{Signer: signer, Witnesses: []*Witness{w}, Quorum: q}); err == nil {
			t.Errorf("New with a quorum of %d of 1 witness: no error", q)
		}
	}
	for _, q := range []int{0, 1} {
		if _, err := New(st, Config{Signer: signer, Witnesses: []*Witness{w}, Quorum: q}); err != nil {
			t.Errorf("New with a quorum of %d of 1 witness: %v", q, err)
		}
	}
}

// TestWitnessRefresh: on a log with nothing new, the witnesses are asked
// again to cosign the published checkpoint once its cosignatures are older
// than Refresh, so that a reader can tell a live idle log from a server
// that keeps it on an old checkpoint (transparency.Verifier.CosignedAt).
func TestWitnessRefresh(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, _ := testSigner(t)
	logVKey := verifierKey(t, signer)
	w := witnesstest.Start(t, "witness.test/w1", testOrigin, logVKey)
	lg, err := New(st, Config{Signer: signer, Witnesses: witnesses(t, w), Refresh: time.Second, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, store.NewID(), 0))
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := transparency.NewVerifier(testOrigin, logVKey, []string{w.VKey}, 1)
	if err != nil {
		t.Fatal(err)
	}
	cosignedAt := func() time.Time {
		t.Helper()
		row, _, err := published(ctx, st.DB(ctx))
		if err != nil {
			t.Fatal(err)
		}
		at, err := v.CosignedAt(row.Note)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	first := cosignedAt()
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cosignedAt(); !got.Equal(first) {
		t.Fatalf("cosigned again at %v before Refresh passed", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := lg.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cosignedAt(); !got.After(first) {
		t.Fatalf("not cosigned again after Refresh: %v, first %v", got, first)
	}
	if w.Size(t, testOrigin) != 2 {
		t.Fatalf("the witness is at size %d, want 2", w.Size(t, testOrigin))
	}
}
