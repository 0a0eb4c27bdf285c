// Command translog measures the transparency log's proofs at two tree
// sizes (the second ten times the first), so that O(log n) growth shows:
// serving an inclusion proof, a consistency proof and a user history
// proof from the database, verifying each as a client does, and the bytes
// a device downloads for its own user's check. The baseline, measured in
// the same run on the same database, is one primary-key SELECT.
//
//	go run ./bench/translog -n 100000 -sizes 2   # 100k and 1M leaves
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/internal/translog"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

func main() {
	n := flag.Int64("n", 100_000, "leaves of the first tree; each next size is ten times more")
	sizes := flag.Int("sizes", 2, "how many tree sizes")
	users := flag.Int("users", 1000, "users with a chain (the rest of the leaves are in no history)")
	rounds := flag.Int("rounds", 2000, "proofs timed per measurement")
	dir := flag.String("dir", "", "directory for the SQLite database (default: a temporary one)")
	flag.Parse()
	ctx := context.Background()
	if *dir == "" {
		d, err := os.MkdirTemp("", "kh-translog-bench")
		check(err)
		defer os.RemoveAll(d)
		*dir = d
	}
	st, err := store.Open(filepath.Join(*dir, "log.db"), store.Options{})
	check(err)
	defer st.Close()
	check(st.Migrate(ctx))
	skey, vkey, err := note.GenerateKey(rand.Reader, "bench.keyholder/log")
	check(err)
	signer, err := note.NewSigner(skey)
	check(err)
	verifier, err := transparency.NewVerifier("bench.keyholder/log", vkey, nil, 0)
	check(err)
	lg, err := translog.New(st, translog.Config{Signer: signer, BatchSize: 50_000,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	check(err)

	var userIDs []string
	for range *users {
		userIDs = append(userIDs, store.NewID())
	}
	fmt.Printf("tree size   build s   PK select   leaf proof serve/verify   consistency serve/verify   history serve/verify   history bytes\n")
	var have int64
	target := *n
	for range *sizes {
		t0 := time.Now()
		have = grow(ctx, st, lg, have, target, userIDs)
		build := time.Since(t0)
		report(ctx, st, lg, verifier, userIDs, have, build, *rounds)
		target *= 10
	}
}

// grow appends leaves until the tree holds about target: each user's
// chain link first, the rest revocations (no history).
func grow(ctx context.Context, st *store.Store, lg *translog.Log, have, target int64, users []string) int64 {
	const batch = 5000
	for have < target {
		err := st.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
			for i := range batch {
				idx := have + int64(i)
				if idx < int64(len(users)) {
					tx.AppendLog(store.LogChainLink, chainLeaf(users[idx]))
					continue
				}
				tx.AppendLog(store.LogRevocation, revocation(idx))
			}
			return nil
		})
		check(err)
		size, err := lg.Sequence(ctx)
		check(err)
		have = size
	}
	return have
}

func report(ctx context.Context, st *store.Store, lg *translog.Log, v *transparency.Verifier, users []string, size int64, build time.Duration, rounds int) {
	db := st.DB(ctx)
	pk := timeIt(rounds, func(i int) {
		var e store.LogEntry
		check(db.Where(`"index" = ?`, 1+rnd(size-1)).Take(&e).Error)
	})
	var leaves []tlog.Hash
	for i := range rounds {
		var e store.LogEntry
		check(db.Where("seq = ?", rnd(size-1)).Take(&e).Error)
		leaves = append(leaves, tlog.RecordHash(e.Leaf))
		_ = i
	}
	var lps []*transparency.LeafProof
	leafServe := timeIt(rounds, func(i int) {
		p, err := lg.LeafProof(ctx, leaves[i], 0)
		check(err)
		lps = append(lps, p)
	})
	tree := treeOf(v, lps[0].TreeProof)
	leafVerify := timeIt(rounds, func(i int) {
		p := lps[i]
		hs := make([]tlog.Hash, len(p.Proof))
		for k, h := range p.Proof {
			hs[k] = tlog.Hash(h)
		}
		check(tlog.CheckRecord(hs, tree.N, tree.Hash, p.Index, leaves[i]))
	})
	var tps []transparency.TreeProof
	consServe := timeIt(rounds, func(i int) {
		p, err := lg.LeafProof(ctx, leaves[0], 1+rnd(size-1))
		check(err)
		tps = append(tps, p.TreeProof)
	})
	olds := make([]tlog.Tree, len(tps))
	for i, p := range tps {
		h, err := tlog.TreeHash(p.From, lg.HashReader(ctx))
		check(err)
		olds[i] = tlog.Tree{N: p.From, Hash: h}
	}
	consVerify := timeIt(rounds, func(i int) {
		p, old := tps[i], olds[i]
		hs := make([]tlog.Hash, len(p.Consistency))
		for k, h := range p.Consistency {
			hs[k] = tlog.Hash(h)
		}
		check(tlog.CheckTree(hs, tree.N, tree.Hash, old.N, old.Hash))
	})
	var hps []*transparency.HistoryProof
	histServe := timeIt(rounds, func(i int) {
		p, err := lg.HistoryProof(ctx, users[i%len(users)], transparency.Chain, 0, 0)
		check(err)
		hps = append(hps, p)
	})
	histVerify := timeIt(rounds, func(i int) {
		p := hps[i]
		_, err := transparency.VerifyHistory(tree, *p, p.User, p.History, transparency.HistoryState{})
		check(err)
	})
	// What a device downloads per check of its own user: the answer for
	// a history it already knows (after = count), with a consistency
	// proof from a tree a little older.
	own, err := lg.HistoryProof(ctx, users[0], transparency.Chain, size-1000, 1)
	check(err)
	b, err := json.Marshal(own)
	check(err)
	fmt.Printf("%9d %9.1f %9.1fµs %11.1fµs / %5.1fµs %13.1fµs / %5.1fµs %11.1fµs / %5.1fµs %10d B\n",
		size, build.Seconds(), us(pk), us(leafServe), us(leafVerify), us(consServe), us(consVerify), us(histServe), us(histVerify), len(b))
	fmt.Printf("          ratios to the PK select: leaf proof %.1f×, consistency %.1f×, history %.1f×\n",
		float64(leafServe)/float64(pk), float64(consServe)/float64(pk), float64(histServe)/float64(pk))
}

func treeOf(v *transparency.Verifier, tp transparency.TreeProof) tlog.Tree {
	c, err := v.Verify([]byte(tp.Checkpoint))
	check(err)
	return c.Tree
}

func timeIt(rounds int, f func(i int)) time.Duration {
	t0 := time.Now()
	for i := range rounds {
		f(i)
	}
	return time.Since(t0) / time.Duration(rounds)
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func rnd(n int64) int64 {
	if n <= 0 {
		return 0
	}
	b, err := rand.Int(rand.Reader, big.NewInt(n))
	check(err)
	return b.Int64()
}

func chainLeaf(user string) []byte {
	c := statement.ChainLink{User: user, Action: statement.ActionAddDevice,
		Key: "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293", KeySHA256: [32]byte{1},
		Signer: "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293", Time: time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)}
	b, err := c.Marshal()
	check(err)
	return transparency.Leaf(b, []byte{0xc2, 0x01, 0x02})
}

func revocation(i int64) []byte {
	r := statement.Revocation{Kind: statement.RevokedGrant, ID: fmt.Sprintf("%032x", i),
		Fingerprint: "7C2D4E6F8A0B1C3D5E7F9A1B2C3D4E5F60718293", Time: time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)}
	b, err := r.Marshal()
	check(err)
	return b
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
