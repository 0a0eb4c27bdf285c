// Package translog is the server side of Keyholder's public log: it
// sequences the leaves that state changes append (store.Tx.AppendLog),
// keeps the Merkle tree's stored hashes and the user map, signs
// checkpoints, gathers witness cosignatures, and serves the C2SP
// tlog-tiles read API and the proofs clients check (pkg/transparency).
//
// Appending is part of each state change's transaction (a log_entries row);
// sequencing is not: rows get their position (Seq) here, one batch at a
// time under a lock, because insertion order (log_entries.index) is neither
// commit order nor gap-free on PostgreSQL. Each batch ends with a map leaf
// and becomes one signed checkpoint; a checkpoint is served once the
// witness quorum cosigned it. The Merkle math is golang.org/x/mod/sumdb/tlog
// and the map filippo.io/torchwood/prefix; what is written here is only
// their storage in the database and the tlog-witness client, for which no
// maintained Go library exists outside of larger log servers (Tessera).
package translog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"filippo.io/torchwood"
	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// Config configures a Log.
type Config struct {
	// Signer signs checkpoints; its name is the log's origin.
	Signer note.Signer
	// Witnesses cosign checkpoints; Quorum of them must (0: all).
	Witnesses []*Witness
	Quorum    int
	// Interval between sequencing rounds (default 1 s).
	Interval time.Duration
	// BatchSize bounds the leaves sequenced in one round (default 4096).
	BatchSize int
	Logger    *slog.Logger
}

// Log sequences and serves the transparency log of one store.
type Log struct {
	st     *store.Store
	cfg    Config
	origin string

	mu      sync.Mutex // serializes rounds in this process
	wakeup  chan struct{}
	witness sync.Mutex
}

// New returns the log of st. Call Run to sequence in the background, or
// Sequence and Publish directly.
func New(st *store.Store, cfg Config) (*Log, error) {
	if cfg.Signer == nil {
		return nil, errors.New("translog: no checkpoint signer")
	}
	if cfg.Quorum == 0 {
		cfg.Quorum = len(cfg.Witnesses)
	}
	if cfg.Quorum > len(cfg.Witnesses) {
		return nil, fmt.Errorf("translog: a quorum of %d witnesses, but %d configured", cfg.Quorum, len(cfg.Witnesses))
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Log{st: st, cfg: cfg, origin: cfg.Signer.Name(), wakeup: make(chan struct{}, 1)}, nil
}

// Origin is the checkpoint origin line.
func (l *Log) Origin() string { return l.origin }

// Run sequences and publishes every Interval until ctx ends.
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := l.Sequence(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Error("log: sequencing", "err", err)
		}
		if err := l.Publish(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("log: publishing", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.wakeup:
		}
	}
}

// Wake asks Run for a round now.
func (l *Log) Wake() {
	select {
	case l.wakeup <- struct{}{}:
	default:
	}
}

// dbHashes reads stored hashes from the database, and from pending (hashes
// of the round in progress) first.
type dbHashes struct {
	ctx     context.Context
	db      *gorm.DB
	pending map[int64]tlog.Hash
}

func (r *dbHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for _, i := range indexes {
		if _, ok := r.pending[i]; !ok {
			missing = append(missing, i)
		}
	}
	found := map[int64][]byte{}
	for start := 0; start < len(missing); start += 500 {
		end := min(start+500, len(missing))
		var rows []store.LogHash
		if err := r.db.WithContext(r.ctx).Where("id IN ?", missing[start:end]).Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("translog: reading hashes: %w", err)
		}
		for _, h := range rows {
			found[h.ID] = h.Hash
		}
	}
	for k, i := range indexes {
		if h, ok := r.pending[i]; ok {
			out[k] = h
			continue
		}
		b, ok := found[i]
		if !ok || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("translog: stored hash %d missing", i)
		}
		copy(out[k][:], b)
	}
	return out, nil
}

// size is the number of sequenced leaves: the highest position plus one
// (positions have no gaps), read from the unique index on seq.
func size(db *gorm.DB) (int64, error) {
	var top *int64
	if err := db.Model(&store.LogEntry{}).Select("MAX(seq)").Scan(&top).Error; err != nil {
		return 0, fmt.Errorf("translog: reading the log size: %w", err)
	}
	if top == nil {
		return 0, nil
	}
	return *top + 1, nil
}

// Sequence gives the unsequenced entries their positions, appends the map
// leaf, stores the new hashes and signs the checkpoint, in one
// transaction. It returns the new tree size (0 if nothing was waiting).
func (l *Log) Sequence(ctx context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var newSize int64
	err := l.st.Apply(ctx, store.Actor{Kind: store.ActorSystem}, func(tx *store.Tx) error {
		if err := tx.LockKey("translog:sequence"); err != nil {
			return err
		}
		db := tx.DB
		var waiting []store.LogEntry
		if err := db.Where("seq IS NULL").Order(`"index"`).Limit(l.cfg.BatchSize).Find(&waiting).Error; err != nil {
			return fmt.Errorf("translog: reading new entries: %w", err)
		}
		if len(waiting) == 0 {
			return nil
		}
		n, err := size(db)
		if err != nil {
			return err
		}
		mapIndex := n + int64(len(waiting))
		treeSize := mapIndex + 1

		values := map[[32]byte]*store.LogMapValue{}
		for i := range waiting {
			e := &waiting[i]
			seq := n + int64(i)
			user, hist, err := l.attribute(db, e)
			if err != nil {
				return err
			}
			rh := tlog.RecordHash(e.Leaf)
			upd := map[string]any{"seq": seq, "leaf_hash": rh[:], "user_id": user, "history": string(hist)}
			if err := db.Model(&store.LogEntry{}).Where(`"index" = ?`, e.Index).Updates(upd).Error; err != nil {
				return fmt.Errorf("translog: sequencing entry %d: %w", e.Index, err)
			}
			e.Seq = &seq
			if user == "" {
				continue
			}
			label := transparency.Label(hist, user)
			v, ok := values[label]
			if !ok {
				v = &store.LogMapValue{Label: label[:], Value: make([]byte, 32)}
				var rows []store.LogMapValue
				if err := db.Where("label = ?", label[:]).Find(&rows).Error; err != nil {
					return fmt.Errorf("translog: reading map value: %w", err)
				}
				if len(rows) == 1 {
					v = &rows[0]
				}
				values[label] = v
			}
			next := transparency.NextValue([32]byte(v.Value), e.Leaf)
			v.Value, v.Count = next[:], v.Count+1
		}

		ms := newMapStorage(db, treeSize)
		tree := prefix.NewTree(transparency.MapHash, ms)
		if n == 0 {
			if err := prefix.InitStorage(ctx, transparency.MapHash, ms); err != nil {
				return fmt.Errorf("translog: creating the map: %w", err)
			}
		}
		for label, v := range values {
			if err := tree.Insert(ctx, label, [32]byte(v.Value)); err != nil {
				return fmt.Errorf("translog: updating the map: %w", err)
			}
			if err := db.Save(v).Error; err != nil {
				return fmt.Errorf("translog: saving map value: %w", err)
			}
		}
		root, err := tree.RootHash(ctx)
		if err != nil {
			return fmt.Errorf("translog: map root: %w", err)
		}
		if err := ms.flush(ctx); err != nil {
			return err
		}
		mapLeaf := transparency.MapLeaf{Size: mapIndex, Root: root}.Marshal()
		mrh := tlog.RecordHash(mapLeaf)
		mapEntry := store.LogEntry{Kind: store.LogMap, Leaf: mapLeaf, Time: tx.Now(), Seq: &mapIndex, LeafHash: mrh[:]}
		if err := db.Create(&mapEntry).Error; err != nil {
			return fmt.Errorf("translog: appending the map leaf: %w", err)
		}

		hr := &dbHashes{ctx: ctx, db: db, pending: map[int64]tlog.Hash{}}
		leaves := append(waiting, mapEntry)
		for i := range leaves {
			idx := n + int64(i)
			hs, err := tlog.StoredHashes(idx, leaves[i].Leaf, hr)
			if err != nil {
				return fmt.Errorf("translog: hashing leaf %d: %w", idx, err)
			}
			base := tlog.StoredHashIndex(0, idx)
			for k, h := range hs {
				hr.pending[base+int64(k)] = h
			}
		}
		rows := make([]store.LogHash, 0, len(hr.pending))
		for id, h := range hr.pending {
			rows = append(rows, store.LogHash{ID: id, Hash: append([]byte(nil), h[:]...)})
		}
		if err := db.CreateInBatches(rows, 500).Error; err != nil {
			return fmt.Errorf("translog: storing hashes: %w", err)
		}
		th, err := tlog.TreeHash(treeSize, hr)
		if err != nil {
			return fmt.Errorf("translog: tree hash: %w", err)
		}
		cp := torchwood.Checkpoint{Origin: l.origin, Tree: tlog.Tree{N: treeSize, Hash: th}}
		signed, err := note.Sign(&note.Note{Text: cp.String()}, l.cfg.Signer)
		if err != nil {
			return fmt.Errorf("translog: signing checkpoint: %w", err)
		}
		if err := db.Create(&store.LogCheckpoint{Size: treeSize, Note: signed, Published: len(l.cfg.Witnesses) == 0}).Error; err != nil {
			return fmt.Errorf("translog: storing checkpoint: %w", err)
		}
		newSize = treeSize
		return nil
	})
	return newSize, err
}

// attribute places an entry in a user's history by the rule a monitor
// replays (transparency.Attribute), answering "which user is this
// record's" from the records table, whose user is the one the record's
// approvals and rejections name.
func (l *Log) attribute(db *gorm.DB, e *store.LogEntry) (string, transparency.History, error) {
	var dbErr error
	a, err := transparency.Attribute(e.Leaf, func(record string) (string, error) {
		var recs []store.Record
		if err := db.Select("user_id").Where("id = ?", record).Limit(1).Find(&recs).Error; err != nil {
			dbErr = fmt.Errorf("translog: leaf %d: record %s: %w", e.Index, record, err)
			return "", dbErr
		}
		if len(recs) == 0 {
			return "", nil
		}
		return recs[0].UserID, nil
	})
	switch {
	case dbErr != nil:
		return "", "", dbErr
	case err != nil:
		// Leaves are written by this server after checking them: one that
		// cannot be attributed is a bug, logged and placed in no history
		// (as a monitor replaying the log does, which reports it) rather
		// than stalling the log.
		l.cfg.Logger.Error("log: leaf in no history", "index", e.Index, "kind", e.Kind, "err", err)
		return "", "", nil
	}
	return a.User, a.History, nil
}
