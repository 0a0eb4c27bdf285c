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
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"filippo.io/torchwood"
	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/statement"
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
	// Refresh is how old the published checkpoint's cosignatures may get
	// on a log with nothing new before the witnesses are asked to cosign
	// it again (default 10 minutes; negative: never), so that a reader
	// can tell an idle log from a server that keeps it on an old
	// checkpoint (transparency.Verifier.CosignedAt).
	Refresh time.Duration
	Logger  *slog.Logger
}

// Log sequences and serves the transparency log of one store.
type Log struct {
	st     *store.Store
	cfg    Config
	origin string

	mu      sync.Mutex // serializes rounds in this process
	wakeup  chan struct{}
	witness sync.Mutex

	// nodes are the user map's newest nodes as of tree size nodesAt,
	// kept between rounds (guarded by mu).
	nodes   map[prefix.Label]*prefix.Node
	nodesAt int64
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
	if cfg.Quorum < 0 || cfg.Quorum > len(cfg.Witnesses) {
		return nil, fmt.Errorf("translog: a quorum of %d witnesses, but %d configured", cfg.Quorum, len(cfg.Witnesses))
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 10 * time.Minute
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Log{st: st, cfg: cfg, origin: cfg.Signer.Name(), wakeup: make(chan struct{}, 1), nodesAt: -1}, nil
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
//
// On SQLite the transaction holds the database's write lock, so a round
// must be short: positions are written in a few batched UPDATEs, map
// values read and written in batches, and the map's newest nodes kept in
// memory between rounds (l.nodes, valid while no other replica sequenced).
func (l *Log) Sequence(ctx context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var newSize int64
	var ms *mapStorage
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
		if n != l.nodesAt || len(l.nodes) > maxCachedNodes {
			l.nodes, l.nodesAt = map[prefix.Label]*prefix.Node{}, n
		}
		mapIndex := n + int64(len(waiting))
		treeSize := mapIndex + 1

		rows, err := l.attributeAll(db, waiting, n)
		if err != nil {
			return err
		}
		values, err := foldValues(db, waiting, rows)
		if err != nil {
			return err
		}
		if err := l.writePositions(db, rows); err != nil {
			return err
		}

		ms = newMapStorage(db, treeSize)
		ms.cache = l.nodes
		tree := prefix.NewTree(transparency.MapHash, ms)
		if n == 0 {
			if err := prefix.InitStorage(ctx, transparency.MapHash, ms); err != nil {
				return fmt.Errorf("translog: creating the map: %w", err)
			}
		}
		vals := make([]store.LogMapValue, 0, len(values))
		for label, v := range values {
			if err := tree.Insert(ctx, label, [32]byte(v.Value)); err != nil {
				return fmt.Errorf("translog: updating the map: %w", err)
			}
			vals = append(vals, *v)
		}
		if err := db.Clauses(clause.OnConflict{UpdateAll: true}).CreateInBatches(vals, 200).Error; err != nil {
			return fmt.Errorf("translog: saving map values: %w", err)
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
		hrows := make([]store.LogHash, 0, len(hr.pending))
		for id, h := range hr.pending {
			hrows = append(hrows, store.LogHash{ID: id, Hash: append([]byte(nil), h[:]...)})
		}
		if err := db.CreateInBatches(hrows, 500).Error; err != nil {
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
	switch {
	case err != nil:
		l.nodes, l.nodesAt = nil, -1 // the round's nodes never committed
	case newSize > 0:
		for label, node := range ms.pending {
			l.nodes[label] = node
		}
		l.nodesAt = newSize
	}
	return newSize, err
}

// maxCachedNodes bounds the map nodes kept between rounds (about 150 bytes
// each); past it the cache starts again from the nodes the next rounds
// read.
const maxCachedNodes = 1 << 20

// position is what sequencing writes to one entry's row.
type position struct {
	index   uint64
	seq     int64
	hash    tlog.Hash
	user    string
	history transparency.History
	histPos *int64 // the position in the user history (nil: in none)
}

// attributeAll places the entries, which get positions from n on. The
// records of the grants among them are looked up in one query.
func (l *Log) attributeAll(db *gorm.DB, entries []store.LogEntry, n int64) ([]position, error) {
	var records []string
	for _, e := range entries {
		if e.Kind != store.LogGrant {
			continue
		}
		if stmt, _, err := transparency.SplitLeaf(e.Leaf); err == nil {
			if g, err := statement.ParseGrant(stmt); err == nil {
				records = append(records, g.Record)
			}
		}
	}
	owners := map[string]string{}
	for start := 0; start < len(records); start += 500 {
		var recs []store.Record
		if err := db.Select("id", "user_id").Where("id IN ?", records[start:min(start+500, len(records))]).Find(&recs).Error; err != nil {
			return nil, fmt.Errorf("translog: reading the records of grants: %w", err)
		}
		for _, r := range recs {
			owners[r.ID] = r.UserID
		}
	}
	out := make([]position, len(entries))
	for i := range entries {
		e := &entries[i]
		a, err := transparency.Attribute(e.Leaf, func(record string) (string, error) { return owners[record], nil })
		if err != nil {
			if signed, lerr := l.signLegacyLeaf(db, e); lerr == nil {
				a, err = transparency.Attribute(signed, func(record string) (string, error) { return owners[record], nil })
			}
		}
		if err != nil {
			// Leaves are written by this server after checking them: one
			// that cannot be attributed is a bug, logged and placed in no
			// history (as a monitor replaying the log does, which reports
			// it) rather than stalling the log.
			l.cfg.Logger.Error("log: leaf in no history", "index", e.Index, "kind", e.Kind, "err", err)
			a = transparency.Attribution{}
		}
		out[i] = position{index: e.Index, seq: n + int64(i), hash: tlog.RecordHash(e.Leaf), user: a.User, history: a.History}
		seq := out[i].seq
		e.Seq = &seq
	}
	return out, nil
}

// signLegacyLeaf replaces the leaf of an entry appended by schema version
// 1 or 2, which logged a signed statement without its signature, by the
// signed leaf, from the signature the store kept with the statement (the
// entry is not in the tree yet, so it can still change). It returns the
// new leaf, or an error if the leaf is not such a statement.
func (l *Log) signLegacyLeaf(db *gorm.DB, e *store.LogEntry) ([]byte, error) {
	stmt := e.Leaf
	s, err := statement.ParseStatement(stmt)
	if err != nil {
		return nil, err
	}
	type signed struct{ Statement, Signature []byte }
	var rows []signed
	switch s := s.(type) {
	case *statement.ChainLink:
		err = db.Model(&store.ChainLink{}).Select("statement", "signature").Where("user_id = ? AND seq = ?", s.User, s.Seq).Find(&rows).Error
	case *statement.Approval:
		err = db.Model(&store.Record{}).Select("decision_statement AS statement", "decision_signature AS signature").Where("id = ?", s.Record).Find(&rows).Error
	case *statement.Rejection:
		err = db.Model(&store.Record{}).Select("decision_statement AS statement", "decision_signature AS signature").Where("id = ?", s.Record).Find(&rows).Error
	case *statement.Grant:
		err = db.Model(&store.Grant{}).Select("statement", "signature").Where("record_id = ?", s.Record).Find(&rows).Error
	default:
		return nil, fmt.Errorf("translog: a %T is not a log leaf", s)
	}
	if err != nil {
		return nil, fmt.Errorf("translog: finding the signature of entry %d: %w", e.Index, err)
	}
	for _, r := range rows {
		if !bytes.Equal(r.Statement, stmt) || len(r.Signature) == 0 {
			continue
		}
		leaf, err := transparency.SignedLeaf(stmt, r.Signature)
		if err != nil {
			return nil, fmt.Errorf("translog: the signature of entry %d: %w", e.Index, err)
		}
		if err := db.Model(&store.LogEntry{}).Where(`"index" = ?`, e.Index).Update("leaf", leaf).Error; err != nil {
			return nil, fmt.Errorf("translog: signing entry %d: %w", e.Index, err)
		}
		e.Leaf = leaf
		return leaf, nil
	}
	return nil, fmt.Errorf("translog: no stored signature for the statement of entry %d", e.Index)
}

// writePositions writes the entries' positions, a few hundred rows per
// UPDATE (UPDATE … FROM (VALUES …), which PostgreSQL and SQLite 3.33+ both
// take, with their own names for the VALUES columns).
func (l *Log) writePositions(db *gorm.DB, rows []position) error {
	const chunk = 200
	for start := 0; start < len(rows); start += chunk {
		part := rows[start:min(start+chunk, len(rows))]
		var q strings.Builder
		args := make([]any, 0, 6*len(part))
		if l.st.Postgres() {
			q.WriteString(`UPDATE log_entries AS e SET seq = v.seq, leaf_hash = v.leaf_hash, user_id = v.user_id, history = v.history, hist_pos = v.hist_pos FROM (VALUES `)
		} else {
			q.WriteString("UPDATE log_entries SET seq = v.column2, leaf_hash = v.column3, user_id = v.column4, history = v.column5, hist_pos = v.column6 FROM (VALUES ")
		}
		for i, r := range part {
			if i > 0 {
				q.WriteString(",")
			}
			if l.st.Postgres() {
				q.WriteString("(?::bigint,?::bigint,?::bytea,?::varchar,?::varchar,?::bigint)")
			} else {
				q.WriteString("(?,?,?,?,?,?)")
			}
			args = append(args, int64(r.index), r.seq, r.hash[:], r.user, string(r.history), r.histPos)
		}
		if l.st.Postgres() {
			q.WriteString(`) AS v(idx, seq, leaf_hash, user_id, history, hist_pos) WHERE e."index" = v.idx`)
		} else {
			q.WriteString(`) AS v WHERE log_entries."index" = v.column1`)
		}
		res := db.Exec(q.String(), args...)
		if res.Error != nil {
			return fmt.Errorf("translog: writing positions: %w", res.Error)
		}
		if res.RowsAffected != int64(len(part)) {
			return fmt.Errorf("translog: writing positions: %d of %d rows updated", res.RowsAffected, len(part))
		}
	}
	return nil
}

// foldValues folds the entries into their histories' values, read in
// batches from log_map_values, and gives each row its position in its
// history; it returns the changed values.
func foldValues(db *gorm.DB, entries []store.LogEntry, rows []position) (map[[32]byte]*store.LogMapValue, error) {
	values := map[[32]byte]*store.LogMapValue{}
	var labels [][]byte
	for _, r := range rows {
		if r.user == "" {
			continue
		}
		label := transparency.Label(r.history, r.user)
		if _, ok := values[label]; !ok {
			values[label] = &store.LogMapValue{Label: label[:], Value: make([]byte, 32)}
			labels = append(labels, label[:])
		}
	}
	for start := 0; start < len(labels); start += 500 {
		var found []store.LogMapValue
		if err := db.Where("label IN ?", labels[start:min(start+500, len(labels))]).Find(&found).Error; err != nil {
			return nil, fmt.Errorf("translog: reading map values: %w", err)
		}
		for _, f := range found {
			v := f
			values[[32]byte(f.Label)] = &v
		}
	}
	for i, r := range rows {
		if r.user == "" {
			continue
		}
		v := values[transparency.Label(r.history, r.user)]
		pos := v.Count
		rows[i].histPos = &pos
		next := transparency.NextValue([32]byte(v.Value), entries[i].Leaf)
		v.Value, v.Count = next[:], v.Count+1
	}
	return values, nil
}
