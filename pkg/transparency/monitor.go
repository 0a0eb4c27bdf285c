package transparency

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"filippo.io/torchwood"
	"filippo.io/torchwood/prefix"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// ErrMap is wrapped by the error of a monitor that found the log's map
// disagreeing with the log: a map leaf whose root is not the one the
// leaves before it give, a tree that does not end in a map leaf, or a leaf
// no history can take.
var ErrMap = errors.New("transparency: map does not match the log")

// A Monitor follows a log over the C2SP tlog-tiles read API and checks it
// as a whole: each checkpoint consistent with the last one trusted, every
// map leaf's root equal to the root of the map it recomputes from the
// leaves before it, and the tree ending in a map leaf. It reports the
// chain links of the users it watches, the keys they add that its
// operator does not know, and the links that do not follow their chain. It is what an auditor or a user's
// organisation runs; a map it recomputes is what keeps the server from
// hiding a leaf from the histories devices and parties check.
type Monitor struct {
	// Tiles reads the log: torchwood.NewTileFetcher on the log's URL
	// (".../log/"), which serves "checkpoint" and the tiles.
	Tiles torchwood.TileReader
	// Trust holds the last checkpoint the monitor trusted. It advances
	// only when a run finds nothing wrong, so a failed run is repeated.
	Trust *Trust
	// Watch reports whether the chain of user is reported; nil watches
	// every user.
	Watch func(user string) bool
	// Known reports whether a key fingerprint is one the monitor's
	// operator knows; a watched chain link adding any other key (device or
	// recovery) is in MonitorReport.Unknown. Nil knows every key.
	Known func(fingerprint string) bool

	// state is the map and chains replayed from the leaves of the tree of
	// size stateAt, kept between runs of one process so that a run reads
	// only the new leaves; a run that fails drops it.
	state   *replay
	stateAt int64
}

// A MonitorReport is what one run of a Monitor found.
type MonitorReport struct {
	// Old and New are the trusted trees before and after the run.
	Old, New tlog.Tree
	// Chain are the chain links and resets of watched users after Old,
	// in log order.
	Chain []ChainEvent
	// Unknown are the events of Chain that add a key Known does not know.
	Unknown []ChainEvent
	// Broken are the events of Chain that have a Problem.
	Broken []ChainEvent
}

// A ChainEvent is a chain link or chain reset leaf of a user.
type ChainEvent struct {
	Index int64
	User  string
	// Link is the chain link, or Reset the chain reset (one is nil).
	Link  *statement.ChainLink
	Reset *statement.ChainReset
	// Problem says how the event breaks its user's chain as the log holds
	// it ("" when it does not): a link whose seq or prev does not follow
	// the user's previous link (a second chain, or one rewritten), or a
	// reset to an epoch that is not the next. A broken event is not
	// applied: the links after it are checked against the ones before.
	// Signatures are not checked (the log holds no public keys; see
	// pkg/keychain for the full check with them).
	Problem string
}

// Run fetches the latest checkpoint, checks that it extends the trusted
// one (the consistency proof is computed from tiles authenticated by the
// new tree hash), reads the leaves — every one from the first on a
// Monitor's first run, only the new ones after a run that succeeded —,
// recomputes the map and checks every map leaf, and then trusts the
// checkpoint. A checkpoint of the trusted tree is not read again.
func (m *Monitor) Run(ctx context.Context) (*MonitorReport, error) {
	raw, err := m.Tiles.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		return nil, fmt.Errorf("transparency: monitor: fetching the checkpoint: %w", err)
	}
	c, err := m.Trust.v.Verify(raw)
	if err != nil {
		return nil, err
	}
	old := m.Trust.Tree()
	report := &MonitorReport{Old: old, New: old}
	p := TreeProof{Checkpoint: string(raw), From: old.N}
	if old.N > 0 && c.N > old.N {
		proof, err := tlog.ProveTree(c.N, old.N, torchwood.TileHashReaderWithContext(ctx, c.Tree, m.Tiles))
		if err != nil {
			return nil, fmt.Errorf("transparency: monitor: consistency proof from size %d to %d: %w", old.N, c.N, err)
		}
		for _, h := range proof {
			p.Consistency = append(p.Consistency, h[:])
		}
	}
	if err := checkConsistency(old, c.Tree, p); err != nil {
		return nil, err
	}
	if c.Tree == old {
		return report, nil
	}
	if err := m.replay(ctx, c.Tree, report); err != nil {
		return report, err
	}
	tree, err := m.Trust.Advance(p)
	if err != nil {
		return report, err
	}
	report.New = tree
	return report, nil
}

// replay reads the leaves of tree, recomputes the map and checks each map
// leaf, and reports the chain events after report.Old. It starts from the
// state of the previous run when that run replayed exactly the trusted
// tree (whose leaves the new tree holds: Run checked consistency first),
// else from the first leaf.
func (m *Monitor) replay(ctx context.Context, tree tlog.Tree, report *MonitorReport) error {
	r, next := m.state, m.stateAt
	m.state = nil // until this run succeeds
	if r == nil || next != report.Old.N {
		var err error
		if r, err = newReplay(ctx); err != nil {
			return err
		}
		next = 0
	}
	client, err := torchwood.NewClient(m.Tiles)
	if err != nil {
		return err
	}
	for next < tree.N {
		start := next
		for i, leaf := range client.Entries(ctx, tree, next) {
			if err := r.add(i, leaf); err != nil {
				return err
			}
			e, stmt, err := chainEvent(i, leaf)
			if err != nil {
				return err
			}
			if e != nil {
				e.Problem = r.follow(e, stmt)
				if i >= report.Old.N {
					m.report(e, report)
				}
			}
			next = i + 1
		}
		if err := client.Err(); err != nil {
			return fmt.Errorf("transparency: monitor: reading leaf %d of %s: %w", next, head(tree), err)
		}
		if next == start {
			return fmt.Errorf("transparency: monitor: reading leaf %d of %s: no leaf returned", next, head(tree))
		}
	}
	if r.lastMap != tree.N-1 {
		return fmt.Errorf("%w: the last leaf (index %d) of the tree of %s is not a map leaf", ErrMap, tree.N-1, head(tree))
	}
	m.state, m.stateAt = r, tree.N
	return nil
}

// chainEvent parses leaf i if it is a chain link or reset.
func chainEvent(i int64, leaf []byte) (*ChainEvent, []byte, error) {
	stmt, _, err := SplitLeaf(leaf)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case bytes.HasPrefix(stmt, []byte("keyholder-chain-link-")):
		l, err := statement.ParseChainLink(stmt)
		if err != nil {
			return nil, nil, fmt.Errorf("%w leaf %d: %v", ErrFormat, i, err)
		}
		return &ChainEvent{Index: i, User: l.User, Link: l}, stmt, nil
	case bytes.HasPrefix(stmt, []byte("keyholder-chain-reset-")):
		r, err := statement.ParseChainReset(stmt)
		if err != nil {
			return nil, nil, fmt.Errorf("%w leaf %d: %v", ErrFormat, i, err)
		}
		return &ChainEvent{Index: i, User: r.User, Reset: r}, stmt, nil
	}
	return nil, nil, nil
}

// report adds e to the report if its user is watched.
func (m *Monitor) report(e *ChainEvent, report *MonitorReport) {
	if m.Watch != nil && !m.Watch(e.User) {
		return
	}
	report.Chain = append(report.Chain, *e)
	if e.Link != nil && m.Known != nil && addsKey(e.Link.Action) && !m.Known(e.Link.Key) {
		report.Unknown = append(report.Unknown, *e)
	}
	if e.Problem != "" {
		report.Broken = append(report.Broken, *e)
	}
}

// A chainHead is where a user's chain is in the log.
type chainHead struct {
	epoch, next int64
	head        [32]byte
	index       int64 // of the head link
}

// follow checks that e extends its user's chain and, if it does, applies
// it; it returns the problem otherwise.
func (r *replay) follow(e *ChainEvent, stmt []byte) string {
	c := r.chains[e.User]
	if e.Reset != nil {
		if e.Reset.Epoch != c.epoch+1 {
			return fmt.Sprintf("reset to epoch %d, the chain is in epoch %d", e.Reset.Epoch, c.epoch)
		}
		r.chains[e.User] = chainHead{epoch: e.Reset.Epoch}
		return ""
	}
	switch {
	case e.Link.Seq != c.next && c.next == 0:
		return fmt.Sprintf("link seq %d, the chain (epoch %d) has no link yet", e.Link.Seq, c.epoch)
	case e.Link.Seq != c.next:
		return fmt.Sprintf("link seq %d, the chain (epoch %d) is at seq %d (leaf %d)", e.Link.Seq, c.epoch, c.next-1, c.index)
	case e.Link.Prev != c.head:
		return fmt.Sprintf("link seq %d does not name the previous link (leaf %d) as prev", e.Link.Seq, c.index)
	}
	r.chains[e.User] = chainHead{epoch: c.epoch, next: c.next + 1, head: keychain.LinkHash(stmt), index: e.Index}
	return ""
}

func addsKey(action string) bool {
	return action == statement.ActionAddDevice || action == statement.ActionSetRecovery
}

// A replay recomputes the map leaf by leaf, as the server builds it.
type replay struct {
	ctx     context.Context
	tree    *prefix.Tree
	records map[string]string
	values  map[[32]byte][32]byte
	dirty   map[[32]byte]bool
	chains  map[string]chainHead
	lastMap int64
}

func newReplay(ctx context.Context) (*replay, error) {
	s := prefix.NewMemoryStorage()
	if err := prefix.InitStorage(ctx, MapHash, s); err != nil {
		return nil, err
	}
	return &replay{ctx: ctx, tree: prefix.NewTree(MapHash, s), records: map[string]string{},
		values: map[[32]byte][32]byte{}, dirty: map[[32]byte]bool{}, chains: map[string]chainHead{}, lastMap: -1}, nil
}

// add folds leaf i into the map, or checks it if it is a map leaf.
func (r *replay) add(i int64, leaf []byte) error {
	if bytes.HasPrefix(leaf, []byte(MapLeafHeader+"\n")) {
		return r.check(i, leaf)
	}
	a, err := Attribute(leaf, func(record string) (string, error) { return r.records[record], nil })
	if err != nil {
		return fmt.Errorf("%w: leaf %d: %v", ErrMap, i, err)
	}
	if a.Record != "" {
		r.records[a.Record] = a.User
	}
	if a.History != "" {
		label := Label(a.History, a.User)
		r.values[label] = NextValue(r.values[label], leaf)
		r.dirty[label] = true
	}
	return nil
}

// check compares map leaf i with the map of the leaves before it.
func (r *replay) check(i int64, leaf []byte) error {
	ml, err := ParseMapLeaf(leaf)
	if err != nil {
		return fmt.Errorf("%w: leaf %d: %v", ErrMap, i, err)
	}
	for label := range r.dirty {
		if err := r.tree.Insert(r.ctx, label, r.values[label]); err != nil {
			return err
		}
	}
	clear(r.dirty)
	root, err := r.tree.RootHash(r.ctx)
	if err != nil {
		return err
	}
	switch {
	case ml.Size != i:
		return fmt.Errorf("%w: the map leaf at index %d says size %d", ErrMap, i, ml.Size)
	case ml.Root != root:
		return fmt.Errorf("%w: the map leaf at index %d has root %x, the %d leaves before it give %x", ErrMap, i, ml.Root, i, root)
	}
	r.lastMap = i
	return nil
}
