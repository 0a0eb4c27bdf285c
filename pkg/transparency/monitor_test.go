package transparency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/transparency"
	"github.com/keyholder/keyholder/pkg/transparency/transparencytest"
)

// monitor returns a Monitor of the log served over HTTP, with an empty
// trust, watching alice and knowing her phone and laptop.
func monitor(t *testing.T, l *transparencytest.Log) *transparency.Monitor {
	srv := httptest.NewServer(l.Handler())
	t.Cleanup(srv.Close)
	tiles, err := torchwood.NewTileFetcher(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := openTrust(t, l)
	known := map[string]bool{transparencytest.Fingerprint("alice-phone"): true, transparencytest.Fingerprint("alice-laptop"): true}
	return &transparency.Monitor{Tiles: tiles, Trust: tr,
		Watch: func(user string) bool { return user == "alice" },
		Known: func(fp string) bool { return known[fp] }}
}

func events(es []transparency.ChainEvent) string {
	var s []string
	for _, e := range es {
		if e.Link != nil {
			s = append(s, fmt.Sprintf("%d:%s:%d", e.Index, e.User, e.Link.Seq))
		} else {
			s = append(s, fmt.Sprintf("%d:%s:reset%d", e.Index, e.User, e.Reset.Epoch))
		}
	}
	return strings.Join(s, " ")
}

func TestMonitor(t *testing.T) {
	ctx := context.Background()
	l := transparencytest.NewLog(t, origin, "witness.example/w1", "witness.example/w2")
	alice, bob := &transparencytest.Chain{User: "alice"}, &transparencytest.Chain{User: "bob"}
	l.Append(alice.Add("alice-phone"), bob.Add("bob-phone"),
		transparencytest.Approval("r1", "alice"), transparencytest.Grant("r1", "auditor"))
	l.Seal()
	// Enough leaves to span data tiles and a partial one.
	for i := range 300 {
		l.Append(transparencytest.Approval(fmt.Sprint("bulk", i), fmt.Sprint("user", i%7)))
		if i%50 == 49 {
			l.Seal()
		}
	}
	l.Append(alice.Add("alice-laptop"))
	l.Seal()
	m := monitor(t, l)

	r, err := m.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Old.N != 0 || r.New != l.Tree() || m.Trust.Tree() != l.Tree() {
		t.Fatalf("Run moved the trust from %+v to %+v, want %+v", r.Old, r.New, l.Tree())
	}
	if got, want := events(r.Chain), fmt.Sprintf("0:alice:0 %d:alice:1", l.Size()-2); got != want || len(r.Unknown) != 0 || len(r.Broken) != 0 {
		t.Fatalf("Run reported %q, unknown %q, broken %q, want %q and nothing unknown or broken", got, events(r.Unknown), events(r.Broken), want)
	}

	// The next run reads only the new leaves (not the first entry bundle
	// again) and reports what is new: a key the monitor does not know, a
	// reset and a new chain.
	counted := &countingTiles{TileReader: m.Tiles}
	m.Tiles = counted
	old := l.Tree()
	i := l.Append(alice.Add("mallory-phone"), alice.Reset(), alice.Add("alice-phone"),
		transparencytest.Grant("bulk3", "auditor"), transparencytest.Revocation("g1", "auditor"))
	l.Seal()
	r, err = m.Run(ctx)
	if err != nil {
		t.Fatalf("second Run: %v", err)
	}
	want := fmt.Sprintf("%d:alice:2 %d:alice:reset1 %d:alice:0", i, i+1, i+2)
	if r.Old != old || events(r.Chain) != want || events(r.Unknown) != fmt.Sprintf("%d:alice:2", i) || len(r.Broken) != 0 {
		t.Fatalf("second Run from %+v reported %q, unknown %q, want from %+v %q", r.Old, events(r.Chain), events(r.Unknown), old, want)
	}
	if counted.firstBundle {
		t.Fatal("the second run read the first entry bundle again: it replayed the log from its start")
	}

	// Nothing new: nothing read, nothing reported.
	r, err = m.Run(ctx)
	if err != nil || len(r.Chain) != 0 || r.New != l.Tree() {
		t.Fatalf("third Run = %+v, %v", r, err)
	}

	// Watching every user and knowing no key reports bob too.
	all := monitor(t, l)
	all.Watch, all.Known = nil, nil
	r, err = all.Run(ctx)
	if err != nil || !strings.Contains(events(r.Chain), "1:bob:0") || len(r.Unknown) != 0 {
		t.Fatalf("Run watching everyone = %q, %v", events(r.Chain), err)
	}
}

// TestMonitorAttacks: a log whose map does not follow its leaves, or that
// forks, is detected by the monitor, which then keeps its trusted tree.
func TestMonitorAttacks(t *testing.T) {
	base := func() *transparencytest.Log {
		l := transparencytest.NewLog(t, origin, "witness.example/w1")
		l.Append(transparencytest.ChainLink("alice", 0, "alice-phone"), transparencytest.Approval("r1", "alice"))
		l.Seal()
		return l
	}
	tests := []struct {
		name    string
		attack  func(l *transparencytest.Log)
		wantErr error
		errHas  string
	}{
		{"leaf hidden from the map", func(l *transparencytest.Log) {
			l.AppendUnmapped(transparencytest.ChainLink("alice", 1, "mallory-phone"))
			l.Append(transparencytest.Approval("r2", "alice"))
			l.Seal()
		}, transparency.ErrMap, "the map leaf at index 5 has root"},
		{"approval hidden from the map", func(l *transparencytest.Log) {
			l.AppendUnmapped(transparencytest.Approval("r2", "alice"))
			l.Seal()
		}, transparency.ErrMap, "the map leaf at index 4 has root"},
		{"map root made up", func(l *transparencytest.Log) {
			l.Append(transparencytest.ChainLink("alice", 1, "alice-laptop"))
			l.SealRoot([32]byte{1, 2, 3})
		}, transparency.ErrMap, "the map leaf at index 4 has root 0102030000"},
		{"tree not ending in a map leaf", func(l *transparencytest.Log) {
			l.Append(transparencytest.ChainLink("alice", 1, "alice-laptop"))
		}, transparency.ErrMap, "the last leaf (index 3)"},
		{"grant of a record no approval binds", func(l *transparencytest.Log) {
			l.AppendUnmapped(transparencytest.Grant("r9", "auditor"))
			l.Seal()
		}, transparency.ErrMap, "leaf 3: transparency: leaf not attributable: grant of record r9"},
		{"map leaf of the wrong size", func(l *transparencytest.Log) {
			l.Append(transparency.MapLeaf{Size: 2}.Marshal())
		}, transparency.ErrMap, "the map leaf at index 3 says size 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := base()
			m := monitor(t, l)
			if _, err := m.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			trusted := m.Trust.Tree()
			tt.attack(l)
			_, err := m.Run(context.Background())
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Run: %v, want %v containing %q", err, tt.wantErr, tt.errHas)
			}
			if m.Trust.Tree() != trusted {
				t.Fatalf("Run moved the trust to %+v after finding %v", m.Trust.Tree(), err)
			}
		})
	}
}

// TestMonitorFork: a monitor that trusts one branch of a split view and is
// then served the other finds the fork, at the same size or a bigger one.
func TestMonitorFork(t *testing.T) {
	for _, grow := range []int{0, 1} {
		t.Run(fmt.Sprint("grown by ", grow), func(t *testing.T) {
			l := transparencytest.NewLog(t, origin, "witness.example/w1")
			l.Append(transparencytest.ChainLink("alice", 0, "alice-phone"))
			l.Seal()
			f := l.Fork()
			l.Append(transparencytest.ChainLink("alice", 1, "alice-laptop"))
			l.Seal()
			f.Append(transparencytest.ChainLink("alice", 1, "mallory-phone"))
			f.Seal()
			for range grow {
				f.Append(transparencytest.Approval("r1", "alice"))
				f.Seal()
			}

			m := monitor(t, l)
			if _, err := m.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			trusted := m.Trust.Tree()
			m.Tiles = monitor(t, f).Tiles
			_, err := m.Run(context.Background())
			if !errors.Is(err, transparency.ErrFork) || !strings.Contains(err.Error(), head(trusted)) || !strings.Contains(err.Error(), head(f.Tree())) {
				t.Fatalf("Run: %v, want ErrFork naming %s and %s", err, head(trusted), head(f.Tree()))
			}
			if m.Trust.Tree() != trusted {
				t.Fatalf("Run moved the trust to %+v", m.Trust.Tree())
			}
		})
	}
}

// TestMonitorRollback: a monitor served an older tree than it trusts
// refuses it.
func TestMonitorRollback(t *testing.T) {
	l := transparencytest.NewLog(t, origin, "witness.example/w1")
	l.Append(transparencytest.ChainLink("alice", 0, "alice-phone"))
	l.Seal()
	older := l.Fork()
	l.Append(transparencytest.ChainLink("alice", 1, "mallory-phone"))
	l.Seal()
	m := monitor(t, l)
	if _, err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.Tiles = monitor(t, older).Tiles
	_, err := m.Run(context.Background())
	if !errors.Is(err, transparency.ErrRollback) || !strings.Contains(err.Error(), head(older.Tree())) || !strings.Contains(err.Error(), head(l.Tree())) {
		t.Fatalf("Run: %v, want ErrRollback naming %s and %s", err, head(older.Tree()), head(l.Tree()))
	}
}

func TestMonitorEmptyLog(t *testing.T) {
	l := transparencytest.NewLog(t, origin, "witness.example/w1")
	m := monitor(t, l)
	r, err := m.Run(context.Background())
	if err != nil || r.New != l.Tree() || len(r.Chain) != 0 {
		t.Fatalf("Run on an empty log = %+v, %v", r, err)
	}
	l.Append(transparencytest.ChainLink("alice", 0, "alice-phone"))
	l.Seal()
	if r, err := m.Run(context.Background()); err != nil || len(r.Chain) != 1 {
		t.Fatalf("Run after the first leaf = %+v, %v", r, err)
	}
}

// TestMonitorBrokenChain: links that do not follow the user's chain in the
// log (a second chain, a rewritten link, a reset out of order) are
// reported as broken, and the chain goes on from its last good link.
func TestMonitorBrokenChain(t *testing.T) {
	l := transparencytest.NewLog(t, origin, "witness.example/w1")
	alice := &transparencytest.Chain{User: "alice"}
	l.Append(alice.Add("alice-phone"), alice.Add("alice-laptop"))
	second := &transparencytest.Chain{User: "alice"}
	i := l.Append(
		second.Add("mallory-phone"),                              // a second chain
		transparencytest.ChainLink("alice", 2, "mallory-laptop"), // seq 2 with a made-up prev
		alice.Add("alice-tablet"),                                // the real seq 2: fine
		transparencytest.ChainReset("alice", 2),                  // epoch 2 after epoch 0
		transparencytest.ChainLink("bob", 1, "bob-phone"),        // seq 1 first
	)
	l.Seal()
	m := monitor(t, l)
	m.Watch = nil
	r, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"link seq 0, the chain (epoch 0) is at seq 1 (leaf 1)",
		"link seq 2 does not name the previous link (leaf 1) as prev",
		"reset to epoch 2, the chain is in epoch 0",
		"link seq 1, the chain (epoch 0) has no link yet",
	}
	var got []string
	for _, e := range r.Broken {
		got = append(got, e.Problem)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("broken:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r.Broken[0].Index != i || r.Broken[3].User != "bob" {
		t.Fatalf("broken events %q", events(r.Broken))
	}
}

// countingTiles notes whether the first entry bundle is read.
type countingTiles struct {
	torchwood.TileReader
	firstBundle bool
}

func (c *countingTiles) ReadTiles(ctx context.Context, tiles []tlog.Tile) ([][]byte, error) {
	for _, t := range tiles {
		if t.L == -1 && t.N == 0 {
			c.firstBundle = true
		}
	}
	return c.TileReader.ReadTiles(ctx, tiles)
}
