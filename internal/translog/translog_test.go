package translog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

const testOrigin = "keyholder.test/log"

// testVKeys and testVerifiers map test signers to their verifier keys.
var (
	testVKeys     = map[note.Signer]string{}
	testVerifiers = map[note.Signer]note.Verifier{}
)

func testSigner(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	testVKeys[s] = vkey
	testVerifiers[s] = v
	return s, v
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// chainLeaf is a chain link leaf of user at seq (the signature bytes are
// not checked by the log).
func chainLeaf(t testing.TB, user string, seq int64) []byte {
	t.Helper()
	c := statement.ChainLink{User: user, Seq: seq, Action: statement.ActionAddDevice,
		Key: "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293", KeySHA256: [32]byte{1},
		Signer: "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293", Time: time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)}
	if seq > 0 {
		c.Prev = [32]byte{byte(seq)}
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return transparency.Leaf(b, []byte{0xc2, byte(seq), 0x01})
}

func appendLeaves(t testing.TB, st *store.Store, kind string, leaves ...[]byte) {
	t.Helper()
	err := st.Apply(context.Background(), store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
		for _, l := range leaves {
			tx.AppendLog(kind, l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// checkpointOf verifies a TreeProof's checkpoint with v.
func checkpointOf(t testing.TB, tp transparency.TreeProof, v note.Verifier) torchwood.Checkpoint {
	t.Helper()
	n, err := note.Open([]byte(tp.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify: %v", err)
	}
	cp, err := torchwood.ParseCheckpoint(n.Text)
	if err != nil || cp.Origin != testOrigin {
		t.Fatalf("checkpoint %q: %v", n.Text, err)
	}
	return cp
}

func proofOf(t testing.TB, b [][]byte) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(b))
	for i, h := range b {
		if len(h) != tlog.HashSize {
			t.Fatalf("hash %d is %d bytes", i, len(h))
		}
		out[i] = tlog.Hash(h)
	}
	return out
}

// verifyHistory checks a HistoryProof as a client does
// (transparency.VerifyHistory), from the state prev, and returns the value
// it proved.
func verifyHistory(t testing.TB, p *transparency.HistoryProof, cp torchwood.Checkpoint, prev [32]byte) [32]byte {
	t.Helper()
	known := transparency.HistoryState{Value: prev, Count: p.After}
	st, err := transparency.VerifyHistory(cp.Tree, *p, p.User, p.History, known)
	if err != nil {
		t.Fatalf("history %s/%s does not verify: %v", p.User, p.History, err)
	}
	return st.Value
}

func TestLog(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testLog(t, b) })
	}
}

func testLog(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	st := storetest.Open(t, b, nil)
	signer, verifier := testSigner(t)
	lg, err := New(st, Config{Signer: signer, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lg.Handler())
	defer srv.Close()

	// Nothing published yet.
	var tp transparency.TreeProof
	if code := getJSON(t, srv.URL+"/v1/log/users/"+store.NewID()+"/chain", &tp); code != http.StatusNotFound {
		t.Fatalf("empty log: %d", code)
	}

	u1, u2, u3 := store.NewID(), store.NewID(), store.NewID()
	first := [][]byte{chainLeaf(t, u1, 0), chainLeaf(t, u2, 0), chainLeaf(t, u1, 1)}
	appendLeaves(t, st, store.LogChainLink, first...)
	rev := []byte("keyholder-revocation-v1\nkind: grant\nid: " + store.NewID() + "\nfingerprint: 7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293\ntime: 2026-11-27T01:02:03Z\n")
	appendLeaves(t, st, store.LogRevocation, rev)
	n, err := lg.Sequence(ctx)
	if err != nil || n != 5 {
		t.Fatalf("Sequence = %d, %v; want 5 (4 leaves and the map leaf)", n, err)
	}
	if n, err := lg.Sequence(ctx); err != nil || n != 0 {
		t.Fatalf("second Sequence with nothing waiting = %d, %v", n, err)
	}

	// The tiles: any tlog-tiles client reads the leaves in order.
	resp, err := http.Get(srv.URL + "/log/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	cpText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cp := checkpointOf(t, transparency.TreeProof{Checkpoint: string(cpText)}, verifier)
	if cp.N != 5 {
		t.Fatalf("checkpoint size %d", cp.N)
	}
	fetcher, err := torchwood.NewTileFetcher(srv.URL + "/log/")
	if err != nil {
		t.Fatal(err)
	}
	client, err := torchwood.NewClient(fetcher)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for _, e := range client.Entries(ctx, cp.Tree, 0) {
		got = append(got, e)
	}
	if err := client.Err(); err != nil {
		t.Fatalf("reading the tiles: %v", err)
	}
	want := append(append([][]byte{}, first...), rev)
	if len(got) != 5 {
		t.Fatalf("read %d entries", len(got))
	}
	for i, w := range want {
		if string(got[i]) != string(w) {
			t.Errorf("entry %d = %q, want %q", i, got[i], w)
		}
	}
	if _, err := transparency.ParseMapLeaf(got[4]); err != nil {
		t.Errorf("last entry is not a map leaf: %v", err)
	}

	// A leaf's inclusion proof.
	var lp transparency.LeafProof
	rh := tlog.RecordHash(first[2])
	if code := getJSON(t, srv.URL+"/v1/log/leaves/"+hex.EncodeToString(rh[:]), &lp); code != http.StatusOK {
		t.Fatalf("leaf proof: %d", code)
	}
	if err := tlog.CheckRecord(proofOf(t, lp.Proof), cp.N, cp.Hash, lp.Index, rh); err != nil || lp.Index != 2 {
		t.Fatalf("leaf proof index %d: %v", lp.Index, err)
	}
	unknown := tlog.RecordHash([]byte("never logged\n"))
	if code := getJSON(t, srv.URL+"/v1/log/leaves/"+hex.EncodeToString(unknown[:]), &lp); code != http.StatusNotFound {
		t.Fatalf("unknown leaf: %d", code)
	}

	// Histories: u1 has two links, u3 none (non-membership).
	var hp transparency.HistoryProof
	if code := getJSON(t, srv.URL+"/v1/log/users/"+u1+"/chain", &hp); code != http.StatusOK {
		t.Fatalf("history: %d", code)
	}
	if hp.Count != 2 || len(hp.Entries) != 2 || hp.Entries[0].Index != 0 || hp.Entries[1].Index != 2 {
		t.Fatalf("u1 history: count %d, entries %+v", hp.Count, hp.Entries)
	}
	v1 := verifyHistory(t, &hp, checkpointOf(t, hp.TreeProof, verifier), [32]byte{})
	if code := getJSON(t, srv.URL+"/v1/log/users/"+u3+"/chain", &hp); code != http.StatusOK || hp.Count != 0 {
		t.Fatalf("u3 history: %d, count %d", code, hp.Count)
	}
	verifyHistory(t, &hp, checkpointOf(t, hp.TreeProof, verifier), [32]byte{})
	if code := getJSON(t, srv.URL+"/v1/log/users/"+u1+"/decisions", &hp); code != http.StatusOK || hp.Count != 0 {
		t.Fatalf("u1 decisions: %d, count %d", code, hp.Count)
	}

	// A second batch: the reader that trusts size 5 gets a consistency
	// proof and only the new entry of u1's history.
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, u1, 2))
	if n, err := lg.Sequence(ctx); err != nil || n != 7 {
		t.Fatalf("Sequence = %d, %v; want 7", n, err)
	}
	if code := getJSON(t, fmt.Sprintf("%s/v1/log/users/%s/chain?from=5&after=2", srv.URL, u1), &hp); code != http.StatusOK {
		t.Fatalf("history after: %d", code)
	}
	cp2 := checkpointOf(t, hp.TreeProof, verifier)
	if hp.From != 5 || tlog.CheckTree(proofOf(t, hp.Consistency), cp2.N, cp2.Hash, cp.N, cp.Hash) != nil {
		t.Fatalf("consistency proof from 5 to %d does not verify", cp2.N)
	}
	if hp.Count != 3 || hp.After != 2 || len(hp.Entries) != 1 || hp.Entries[0].Index != 5 {
		t.Fatalf("u1 history after 2: count %d, entries %+v", hp.Count, hp.Entries)
	}
	verifyHistory(t, &hp, cp2, v1)

	for _, bad := range []string{"/v1/log/users/" + u1 + "/keys", "/v1/log/users/" + u1 + "/chain?from=99",
		"/v1/log/users/" + u1 + "/chain?after=9", "/v1/log/users/x%20y/chain", "/v1/log/leaves/abc", "/log/tile/0/x999/000"} {
		code := getJSON(t, srv.URL+bad, &hp)
		if code != http.StatusBadRequest && code != http.StatusNotFound {
			t.Errorf("GET %s = %d", bad, code)
		}
	}
}

// TestSequenceReplicas: two replicas sequencing while a third writer
// appends give every leaf exactly one position, with no gaps.
func TestSequenceReplicas(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			sts := storetest.OpenShared(t, b, nil, 2)
			signer, _ := testSigner(t)
			var logs []*Log
			for _, st := range sts {
				lg, err := New(st, Config{Signer: signer, Logger: discard()})
				if err != nil {
					t.Fatal(err)
				}
				logs = append(logs, lg)
			}
			const writes = 40
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for _, lg := range logs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := lg.Sequence(ctx); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			var users []string
			for i := range writes {
				u := store.NewID()
				users = append(users, u)
				appendLeaves(t, sts[i%2], store.LogChainLink, chainLeaf(t, u, 0))
			}
			close(stop)
			wg.Wait()
			if _, err := logs[0].Sequence(ctx); err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			if err := sts[0].DB(ctx).Model(&store.LogEntry{}).Where("seq IS NOT NULL").Order("seq").Pluck("seq", &seqs).Error; err != nil {
				t.Fatal(err)
			}
			var maps int64
			sts[0].DB(ctx).Model(&store.LogEntry{}).Where("kind = ?", store.LogMap).Count(&maps)
			if int64(len(seqs)) != writes+maps {
				t.Fatalf("%d sequenced, want %d leaves and %d map leaves", len(seqs), writes, maps)
			}
			for i, s := range seqs {
				if s != int64(i) {
					t.Fatalf("position %d holds seq %d: a gap or a duplicate", i, s)
				}
			}
			var last store.LogEntry
			sts[0].DB(ctx).Where("seq = ?", len(seqs)-1).Take(&last)
			if !strings.HasPrefix(string(last.Leaf), transparency.MapLeafHeader) {
				t.Fatal("the last leaf is not a map leaf")
			}
			// The map the two replicas built in turns (each with its own
			// node cache) proves every user's history.
			for i, u := range users {
				lg := logs[i%2]
				p, err := lg.HistoryProof(ctx, u, transparency.Chain, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				n, _ := note.Open([]byte(p.Checkpoint), note.VerifierList(testVerifiers[signer]))
				cp, err := torchwood.ParseCheckpoint(n.Text)
				if err != nil {
					t.Fatal(err)
				}
				if st, err := transparency.VerifyHistory(cp.Tree, *p, u, transparency.Chain, transparency.HistoryState{}); err != nil || st.Count != 1 {
					t.Fatalf("user %d's history: %+v, %v", i, st, err)
				}
			}
		})
	}
}

func TestLogKey(t *testing.T) {
	path := t.TempDir() + "/log.key"
	s, err := LoadOrCreateKey(path, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateKey(path, testOrigin)
	if err != nil || again.KeyHash() != s.KeyHash() {
		t.Fatalf("reloaded key differs: %v", err)
	}
	if _, err := LoadOrCreateKey(path, "other.test/log"); err == nil || !strings.Contains(err.Error(), "never changes") {
		t.Fatalf("another origin: %v", err)
	}
	vkey, err := VerifierKey(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: "hello\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
		t.Fatalf("the verifier key does not verify the key's signatures: %v", err)
	}
}
