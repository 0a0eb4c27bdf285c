package translog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

// TestServeTileHostilePaths: tile paths beyond the published tree — deep
// levels whose span overflows, indexes whose leaf number overflows — are
// 404s, never a panic, an internal error or an error in the server's log.
func TestServeTileHostilePaths(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, _ := testSigner(t)
	var logged bytes.Buffer
	lg, err := New(st, Config{Signer: signer, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, st, store.LogChainLink, chainLeaf(t, store.NewID(), 0))
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lg.Handler())
	defer srv.Close()
	for _, path := range []string{
		"tile/8/000",
		"tile/9/000",
		"tile/63/000",
		"tile/1000/000.p/1",
		"tile/0/x036/028/925/171/408/000",
		"tile/0/x072/057/594/037/927/936.p/1",
		"tile/1/x036/028/925/171/408/000.p/2",
		"tile/entries/x036/028/925/171/408/000.p/1",
		"tile/entries/x072/057/594/037/927/935.p/255",
		"tile/0/000.p/3",
		"tile/entries/000.p/3",
	} {
		resp, err := http.Get(srv.URL + "/log/" + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET /log/%s: %s, want 404 or 400", path, resp.Status)
		}
	}
	if logged.Len() > 0 {
		t.Errorf("hostile tile paths were logged as server errors:\n%s", logged.String())
	}
}

func TestTileInTree(t *testing.T) {
	for _, c := range []struct {
		l    int
		n    int64
		w    int
		size int64
		want bool
	}{
		{0, 0, 5, 5, true},
		{0, 0, 6, 5, false},
		{0, 0, 256, 255, false},
		{0, 0, 256, 256, true},
		{0, 1, 1, 256, false},
		{0, 1, 1, 257, true},
		{-1, 1, 256, 512, true},
		{-1, 1, 256, 511, false},
		{1, 0, 1, 255, false},
		{1, 0, 1, 256, true},
		{1, 0, 2, 511, false},
		{1, 0, 2, 512, true},
		{2, 0, 1, 1 << 16, true},
		{7, 0, 1, 1 << 56, true},
		{7, 0, 2, 1 << 56, false},
		{8, 0, 1, 1<<63 - 1, false},
		{0, 1 << 55, 1, 1<<63 - 1, false},
		{0, 1<<55 - 1, 255, 1<<63 - 1, true},
		{0, 1<<55 - 1, 256, 1<<63 - 1, false},
	} {
		if got := tileInTree(tlog.Tile{H: 8, L: c.l, N: c.n, W: c.w}, c.size); got != c.want {
			t.Errorf("tile L=%d N=%d W=%d in a tree of %d: %v, want %v", c.l, c.n, c.w, c.size, got, c.want)
		}
	}
}

// TestSequenceAfterFailedRound: a round that fails after it changed the
// map in memory (here: storing its checkpoint) leaves nothing behind — not
// in the database, not in the node cache — and the next rounds build the
// map a monitor recomputes from the leaves, on every backend.
func TestSequenceAfterFailedRound(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			st := storetest.Open(t, b, nil)
			signer, _ := testSigner(t)
			lg, err := New(st, Config{Signer: signer, Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
			var fail atomic.Bool
			name := "translog-test-fail-" + store.NewID()
			err = st.DB(ctx).Callback().Create().Before("gorm:create").Register(name, func(db *gorm.DB) {
				if fail.Load() && db.Statement.Table == "log_checkpoints" {
					db.AddError(errors.New("injected failure"))
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.DB(ctx).Callback().Create().Remove(name) })

			alice, bob := store.NewID(), store.NewID()
			appendLeaves(t, st, store.LogChainLink, chainLeaf(t, alice, 0))
			if _, err := lg.Sequence(ctx); err != nil {
				t.Fatal(err)
			}
			appendLeaves(t, st, store.LogChainLink, chainLeaf(t, alice, 1), chainLeaf(t, bob, 0))
			fail.Store(true)
			if _, err := lg.Sequence(ctx); err == nil {
				t.Fatal("the round with a failing checkpoint succeeded")
			}
			fail.Store(false)
			// The retry takes fewer leaves than the failed round did, so a
			// node the failed round left in the cache would show (bob's).
			lg.cfg.BatchSize = 1
			if n, err := lg.Sequence(ctx); err != nil || n != 4 {
				t.Fatalf("the round after the failed one: size %d, %v; want 4", n, err)
			}
			lg.cfg.BatchSize = 100
			appendLeaves(t, st, store.LogChainLink, chainLeaf(t, bob, 1))
			if n, err := lg.Sequence(ctx); err != nil || n != 7 {
				t.Fatalf("the next round: size %d, %v; want 7", n, err)
			}

			srv := httptest.NewServer(lg.Handler())
			defer srv.Close()
			tiles, err := torchwood.NewTileFetcher(srv.URL + "/log/")
			if err != nil {
				t.Fatal(err)
			}
			v, err := transparency.NewVerifier(testOrigin, verifierKey(t, signer), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			trust, err := transparency.OpenTrust(filepath.Join(t.TempDir(), "trust"), v)
			if err != nil {
				t.Fatal(err)
			}
			// (chainLeaf's prev hashes are fake, so the monitor reports the
			// links as broken chains; the map is what is checked here.)
			m := &transparency.Monitor{Tiles: tiles, Trust: trust}
			if r, err := m.Run(ctx); err != nil || r.New.N != 7 || len(r.Chain) != 4 {
				t.Fatalf("monitor: %+v, %v", r, err)
			}
			for _, u := range []string{alice, bob} {
				p, err := lg.HistoryProof(ctx, u, transparency.Chain, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := trust.VerifyHistory(*p, u, transparency.Chain, transparency.HistoryState{}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestHistoryPages: a history whose leaves are large (a hostile user's
// own, with 16 KiB signatures) is served in answers of at most
// maxHistoryBytes of leaves, and a reader that follows
// transparency.ErrMoreEntries verifies all of it.
func TestHistoryPages(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	signer, _ := testSigner(t)
	lg, err := New(st, Config{Signer: signer, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	user := store.NewID()
	const links = 100
	big := make([]byte, 16<<10)
	var leaves [][]byte
	for i := range links {
		stmt, _, err := transparency.SplitLeaf(chainLeaf(t, user, int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, transparency.Leaf(stmt, big))
	}
	appendLeaves(t, st, store.LogChainLink, leaves...)
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(lg.Handler())
	defer srv.Close()
	v, err := transparency.NewVerifier(testOrigin, verifierKey(t, signer), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := transparency.OpenTrust(filepath.Join(t.TempDir(), "trust"), v)
	if err != nil {
		t.Fatal(err)
	}
	var state transparency.HistoryState
	answers := 0
	for {
		var p transparency.HistoryProof
		if code := getJSON(t, fmt.Sprintf("%s/v1/log/users/%s/chain?after=%d", srv.URL, user, state.Count), &p); code != http.StatusOK {
			t.Fatalf("GET after=%d: %d", state.Count, code)
		}
		answers++
		n := 0
		for _, e := range p.Entries {
			n += len(e.Leaf)
		}
		if n > maxHistoryBytes {
			t.Fatalf("an answer of %d entries holds %d bytes of leaves", len(p.Entries), n)
		}
		state, err = trust.VerifyHistory(p, user, transparency.Chain, state)
		if errors.Is(err, transparency.ErrMoreEntries) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if state.Count != links || answers < 3 {
		t.Fatalf("read %d entries in %d answers, want %d in at least 3", state.Count, answers, links)
	}
}

// TestSequenceLeavesBeforeSignatures: entries appended by schema versions
// 1 and 2, which logged the bare statement, are sequenced as the signed
// leaf (the signature the store kept with the statement), so that the
// user's history holds them and a monitor accepts the log.
func TestSequenceLeavesBeforeSignatures(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) { testSequenceLeavesBeforeSignatures(t, b) })
	}
}

func testSequenceLeavesBeforeSignatures(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	st := storetest.Open(t, b, nil)
	signer, _ := testSigner(t)
	lg, err := New(st, Config{Signer: signer, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	key, err := envelope.GenerateKey("phone")
	if err != nil {
		t.Fatal(err)
	}
	user := store.NewID()
	stmt, _, err := transparency.SplitLeaf(chainLeaf(t, user, 0))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := statement.Sign(stmt, key)
	if err != nil {
		t.Fatal(err)
	}
	// An approval and a grant of a record of the user, with their
	// signatures where the server keeps them.
	record := store.NewID()
	signedBy := func(leaf []byte) (stmt, sig []byte) {
		stmt, _, err := transparency.SplitLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if sig, err = statement.Sign(stmt, key); err != nil {
			t.Fatal(err)
		}
		return stmt, sig
	}
	approval, approvalSig := signedBy(transparencytest.Approval(record, user))
	grant, grantSig := signedBy(transparencytest.Grant(record, "auditor"))
	err = st.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
		if _, err := tx.AppendChainLink(user, 0, 0, stmt, sig, nil); err != nil {
			return err
		}
		rec := store.Record{ID: record, UserID: user, PartyID: store.NewID(), State: store.StateApproved, Profile: "p",
			CiphertextSHA256: "00", MetadataSHA256: "00", DecisionStatement: approval, DecisionSignature: approvalSig}
		if err := tx.Insert(&rec); err != nil {
			return err
		}
		g := store.Grant{ID: store.NewID(), RecordID: record, PartyID: store.NewID(), UserID: user, RequestID: store.NewID(),
			DeviceID: store.NewID(), KeyPacket: []byte{1}, Statement: grant, Signature: grantSig}
		if err := tx.Insert(&g); err != nil {
			return err
		}
		tx.AppendLog(store.LogApproval, approval)
		tx.AppendLog(store.LogGrant, grant)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// As version 1 logged it.
	if err := st.DB(ctx).Model(&store.LogEntry{}).Where("seq IS NULL AND kind = ?", store.LogChainLink).Update("leaf", stmt).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := lg.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := transparency.SignedLeaf(stmt, sig)
	if err != nil {
		t.Fatal(err)
	}
	p, err := lg.HistoryProof(ctx, user, transparency.Chain, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 1 || !bytes.Equal(p.Entries[0].Leaf, want) {
		t.Fatalf("the chain history holds %d entries (%v), want the signed leaf", p.Count, p.Entries)
	}
	d, err := lg.HistoryProof(ctx, user, transparency.Decisions, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Count != 2 {
		t.Fatalf("the decisions history holds %d entries, want the approval and the grant", d.Count)
	}
	srv := httptest.NewServer(lg.Handler())
	defer srv.Close()
	tiles, err := torchwood.NewTileFetcher(srv.URL + "/log/")
	if err != nil {
		t.Fatal(err)
	}
	v, err := transparency.NewVerifier(testOrigin, verifierKey(t, signer), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := transparency.OpenTrust(filepath.Join(t.TempDir(), "trust"), v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&transparency.Monitor{Tiles: tiles, Trust: trust}).Run(ctx); err != nil {
		t.Fatalf("monitor: %v", err)
	}
}
