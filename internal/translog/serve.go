package translog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"filippo.io/torchwood"
	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/tlog"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// ErrNotFound: no published checkpoint yet, or the leaf is not in it.
var ErrNotFound = errors.New("translog: not in the log")

// maxHistoryEntries and maxHistoryBytes bound one answer's entries and
// the bytes of their leaves (a leaf may be 26 KiB: a 4 KiB statement and
// a 16 KiB signature in base64); a reader continues with ?after=
// (transparency.ErrMoreEntries). The first entry is always sent.
const (
	maxHistoryEntries = 1000
	maxHistoryBytes   = 1 << 20
)

// published is the newest checkpoint the quorum cosigned.
func published(ctx context.Context, db *gorm.DB) (store.LogCheckpoint, torchwood.Checkpoint, error) {
	var rows []store.LogCheckpoint
	if err := db.WithContext(ctx).Where("published = ?", true).Order("size DESC").Limit(1).Find(&rows).Error; err != nil {
		return store.LogCheckpoint{}, torchwood.Checkpoint{}, fmt.Errorf("translog: reading checkpoint: %w", err)
	}
	if len(rows) == 0 {
		return store.LogCheckpoint{}, torchwood.Checkpoint{}, ErrNotFound
	}
	text, _, _ := strings.Cut(string(rows[0].Note), "\n\n")
	cp, err := torchwood.ParseCheckpoint(text + "\n")
	if err != nil {
		return store.LogCheckpoint{}, torchwood.Checkpoint{}, fmt.Errorf("translog: stored checkpoint: %w", err)
	}
	return rows[0], cp, nil
}

// treeProof is the published checkpoint and its consistency proof from
// size from.
func (l *Log) treeProof(ctx context.Context, db *gorm.DB, from int64) (transparency.TreeProof, torchwood.Checkpoint, error) {
	row, cp, err := published(ctx, db)
	if err != nil {
		return transparency.TreeProof{}, cp, err
	}
	tp := transparency.TreeProof{Checkpoint: string(row.Note)}
	if from < 0 || from > cp.N {
		return tp, cp, fmt.Errorf("%w: from=%d is beyond the log's size %d", errBadRequest, from, cp.N)
	}
	if from > 0 && from < cp.N {
		p, err := tlog.ProveTree(cp.N, from, &dbHashes{ctx: ctx, db: db})
		if err != nil {
			return tp, cp, fmt.Errorf("translog: consistency proof: %w", err)
		}
		tp.From, tp.Consistency = from, hashes(p)
	}
	return tp, cp, nil
}

var errBadRequest = errors.New("bad request")

func hashes[T ~[]tlog.Hash](p T) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = append([]byte(nil), h[:]...)
	}
	return out
}

// LeafProof proves the leaf with record hash rh in the published tree.
func (l *Log) LeafProof(ctx context.Context, rh tlog.Hash, from int64) (*transparency.LeafProof, error) {
	// No transaction: what a proof reads is immutable once the checkpoint
	// it reads first is published (hashes, positions, versioned map
	// nodes), and on SQLite a transaction would take the write lock.
	var p *transparency.LeafProof
	err := func(db *gorm.DB) error {
		tp, cp, err := l.treeProof(ctx, db, from)
		if err != nil {
			return err
		}
		var rows []store.LogEntry
		if err := db.Select("seq").Where("leaf_hash = ? AND seq < ?", rh[:], cp.N).Order("seq").Limit(1).Find(&rows).Error; err != nil {
			return fmt.Errorf("translog: finding leaf: %w", err)
		}
		if len(rows) == 0 || rows[0].Seq == nil {
			return ErrNotFound
		}
		rp, err := tlog.ProveRecord(cp.N, *rows[0].Seq, &dbHashes{ctx: ctx, db: db})
		if err != nil {
			return fmt.Errorf("translog: inclusion proof: %w", err)
		}
		p = &transparency.LeafProof{TreeProof: tp, Index: *rows[0].Seq, Proof: hashes(rp)}
		return nil
	}(l.st.DB(ctx))
	return p, err
}

// HistoryProof is a user's history in the published tree, from entry
// after, one page of it (see historyPage): a reader with more to read asks
// again after what it has (transparency.ErrMoreEntries).
func (l *Log) HistoryProof(ctx context.Context, user string, h transparency.History, from, after int64) (*transparency.HistoryProof, error) {
	if h != transparency.Chain && h != transparency.Decisions {
		return nil, fmt.Errorf("%w: no history %q (chain or decisions)", errBadRequest, h)
	}
	if after < 0 {
		return nil, fmt.Errorf("%w: after=%d", errBadRequest, after)
	}
	var p *transparency.HistoryProof
	err := func(db *gorm.DB) error { // no transaction: see LeafProof
		tp, cp, err := l.treeProof(ctx, db, from)
		if err != nil {
			return err
		}
		mapIndex := cp.N - 1
		var ml store.LogEntry
		if err := db.Where("seq = ?", mapIndex).Take(&ml).Error; err != nil {
			return fmt.Errorf("translog: reading map leaf %d: %w", mapIndex, err)
		}
		hr := &dbHashes{ctx: ctx, db: db}
		rp, err := tlog.ProveRecord(cp.N, mapIndex, hr)
		if err != nil {
			return fmt.Errorf("translog: map leaf proof: %w", err)
		}
		tree := prefix.NewTree(transparency.MapHash, newMapStorage(db, cp.N))
		_, lookup, err := tree.Lookup(ctx, transparency.Label(h, user))
		if err != nil {
			return fmt.Errorf("translog: map lookup: %w", err)
		}
		// The history's length in this tree: the position of its last
		// leaf before cp.N, plus one (an index lookup, not a count).
		var last []store.LogEntry
		if err := db.Select("hist_pos").Where("user_id = ? AND history = ? AND seq < ?", user, string(h), cp.N).
			Order("seq DESC").Limit(1).Find(&last).Error; err != nil {
			return fmt.Errorf("translog: reading the history's length: %w", err)
		}
		var count int64
		if len(last) == 1 {
			if last[0].HistPos == nil {
				return fmt.Errorf("translog: user %s's %s history has a leaf without a position", user, h)
			}
			count = *last[0].HistPos + 1
		}
		if after > count {
			return fmt.Errorf("%w: after=%d, but the history has %d entries", errBadRequest, after, count)
		}
		rows, err := historyPage(db, user, h, cp.N, after)
		if err != nil {
			return err
		}
		p = &transparency.HistoryProof{
			TreeProof: tp, User: user, History: h,
			MapLeaf: ml.Leaf, MapLeafProof: hashes(rp),
			Lookup: transparency.MapNodes(lookup), Count: count, After: after,
			Entries: make([]transparency.HistoryEntry, len(rows)),
		}
		for i, r := range rows {
			p.Entries[i] = transparency.HistoryEntry{Index: *r.Seq, Leaf: r.Leaf}
		}
		return nil
	}(l.st.DB(ctx))
	return p, err
}

// historyPage reads the entries of a history from entry after on, in
// chunks, up to maxHistoryEntries entries or maxHistoryBytes of leaves.
func historyPage(db *gorm.DB, user string, h transparency.History, size, after int64) ([]store.LogEntry, error) {
	const chunk = 100
	var out []store.LogEntry
	leafBytes := 0
	for len(out) < maxHistoryEntries {
		var rows []store.LogEntry
		if err := db.Where("user_id = ? AND history = ? AND hist_pos >= ? AND seq < ?", user, string(h), after+int64(len(out)), size).
			Order("hist_pos").Limit(min(chunk, maxHistoryEntries-len(out))).Find(&rows).Error; err != nil {
			return nil, fmt.Errorf("translog: reading history: %w", err)
		}
		for _, r := range rows {
			if len(out) > 0 && leafBytes+len(r.Leaf) > maxHistoryBytes {
				return out, nil
			}
			leafBytes += len(r.Leaf)
			out = append(out, r)
		}
		if len(rows) < chunk {
			break
		}
	}
	return out, nil
}

// Handler serves the tlog-tiles read API under /log/ and the proof routes
// under /v1/log/. Everything it serves is public.
func (l *Log) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /log/checkpoint", l.serveCheckpoint)
	mux.HandleFunc("GET /log/tile/", l.serveTile)
	mux.HandleFunc("GET /v1/log/leaves/{hash}", l.serveLeaf)
	mux.HandleFunc("GET /v1/log/users/{id}/{history}", l.serveHistory)
	return mux
}

func (l *Log) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	row, _, err := published(r.Context(), l.st.DB(r.Context()))
	if err != nil {
		l.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(row.Note)
}

func (l *Log) serveTile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := torchwood.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/log/"))
	if err != nil {
		l.fail(w, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	db := l.st.DB(ctx)
	_, cp, err := published(ctx, db)
	if err != nil {
		l.fail(w, err)
		return
	}
	if !tileInTree(t, cp.N) {
		l.fail(w, ErrNotFound)
		return
	}
	var data []byte
	if t.L == -1 {
		var rows []store.LogEntry
		start := t.N * torchwood.TileWidth
		if err := db.Select("seq", "leaf").Where("seq >= ? AND seq < ?", start, start+int64(t.W)).Order("seq").Find(&rows).Error; err != nil {
			l.fail(w, err)
			return
		}
		if len(rows) != t.W {
			l.fail(w, fmt.Errorf("translog: entry bundle %d: %d of %d leaves", t.N, len(rows), t.W))
			return
		}
		for _, e := range rows {
			if data, err = torchwood.AppendTileEntry(data, e.Leaf); err != nil {
				l.fail(w, err)
				return
			}
		}
	} else if data, err = tlog.ReadTileData(t, &dbHashes{ctx: ctx, db: db}); err != nil {
		l.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if t.W == torchwood.TileWidth {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	w.Write(data)
}

// tileInTree reports whether the tree of size n covers tile t: all the
// leaves under its W hashes are in the tree (a partial tile of any width
// up to the tree's is immutable, so it is served too). The path is the
// client's: a level or index that would overflow is simply not covered.
func tileInTree(t tlog.Tile, n int64) bool {
	level := int64(t.H) * int64(max(t.L, 0)) // a hash at this level spans 2^level leaves
	if level >= 63 {
		return false
	}
	hashes := n >> level // the complete hashes at that level
	return t.N <= (hashes-int64(t.W))/int64(torchwood.TileWidth) && t.N*int64(torchwood.TileWidth)+int64(t.W) <= hashes
}

func (l *Log) serveLeaf(w http.ResponseWriter, r *http.Request) {
	b, err := hex.DecodeString(r.PathValue("hash"))
	if err != nil || len(b) != tlog.HashSize {
		l.fail(w, fmt.Errorf("%w: the leaf hash must be 64 hex digits", errBadRequest))
		return
	}
	from, err := queryInt(r, "from")
	if err != nil {
		l.fail(w, err)
		return
	}
	p, err := l.LeafProof(r.Context(), tlog.Hash(b), from)
	if err != nil {
		l.fail(w, err)
		return
	}
	writeJSON(w, p)
}

func (l *Log) serveHistory(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("id")
	if !store.ValidID(user) {
		l.fail(w, fmt.Errorf("%w: %q is not a user id", errBadRequest, user))
		return
	}
	from, err := queryInt(r, "from")
	if err != nil {
		l.fail(w, err)
		return
	}
	after, err := queryInt(r, "after")
	if err != nil {
		l.fail(w, err)
		return
	}
	p, err := l.HistoryProof(r.Context(), user, transparency.History(r.PathValue("history")), from, after)
	if err != nil {
		l.fail(w, err)
		return
	}
	writeJSON(w, p)
}

func queryInt(r *http.Request, name string) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s=%q is not a size", errBadRequest, name, s)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func (l *Log) fail(w http.ResponseWriter, err error) {
	p := api.Problem{Type: api.ProblemInternal, Title: "Internal Server Error", Status: http.StatusInternalServerError}
	switch {
	case errors.Is(err, ErrNotFound):
		p = api.Problem{Type: api.ProblemNotFound, Title: "Not Found", Status: http.StatusNotFound,
			Detail: "not in the published log (yet: the log integrates every second)"}
	case errors.Is(err, errBadRequest):
		p = api.Problem{Type: api.ProblemBadRequest, Title: "Bad Request", Status: http.StatusBadRequest, Detail: err.Error()}
	default:
		l.cfg.Logger.Error("log: serving", "err", err)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

// HashReader reads the tree's stored hashes (for tools and benchmarks
// that compute tree hashes and proofs themselves).
func (l *Log) HashReader(ctx context.Context) tlog.HashReader {
	return &dbHashes{ctx: ctx, db: l.st.DB(ctx)}
}
