package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/torchwood"
	"github.com/spf13/cobra"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// monitorCheckpointFile is the monitor's own trusted checkpoint: it
// advances only after a whole pass found nothing wrong, unlike the
// client's.
const monitorCheckpointFile = "monitor-checkpoint"

// monitorEvent is one chain event as monitor --json prints it.
type monitorEvent struct {
	Index   int64  `json:"index"`
	User    string `json:"user"`
	Kind    string `json:"kind"` // "link" or "reset"
	Seq     int64  `json:"seq,omitempty"`
	Action  string `json:"action,omitempty"`
	Key     string `json:"key,omitempty"`
	Signer  string `json:"signer,omitempty"`
	Epoch   int64  `json:"epoch,omitempty"`
	Unknown bool   `json:"unknown_key,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// monitorPass is what one pass found, as monitor --json prints it.
type monitorPass struct {
	OldSize int64          `json:"old_size"`
	NewSize int64          `json:"new_size"`
	NewHash string         `json:"new_hash"`
	Events  []monitorEvent `json:"events"`
	Error   string         `json:"error,omitempty"`
}

func monitorCmd(a *app) *cobra.Command {
	var watch, known []string
	var once, asJSON bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "monitor [--watch USER]... [--known-key FPR]... [--once]",
		Short: "Follow the transparency log: check it as a whole and report the key chain events of users",
		Long: `Follow the server's transparency log (its tlog-tiles read API) from the last
checkpoint this monitor trusted: every checkpoint must extend the one before, and
every map leaf must be the map the leaves before it give. It reports the key
chain links and resets of the users given with --watch (every user without it).

With --known-key (repeatable), a watched link that adds a device or recovery key
not in the list is reported as unknown. The log key and witnesses are the ones
keyholder log configured. Runs one pass with --once; otherwise a pass every
--interval until stopped.

Exit codes: 3 when a pass finds a key it does not know, a chain link that does
not follow its chain, a map or log inconsistency (fork, rollback, map mismatch);
1 for other errors (the server could not be read, no log key configured).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := clihome.LoadLogSettings(a.home)
			if err != nil {
				return err
			}
			if s == nil {
				return errors.New("no log key configured: run keyholder log --key VKEY (keyholderd log-key prints it)")
			}
			v, err := s.Verifier()
			if err != nil {
				return err
			}
			trust, err := transparency.OpenTrust(filepath.Join(a.home, monitorCheckpointFile), v)
			if err != nil {
				return err
			}
			tiles, err := torchwood.NewTileFetcher(strings.TrimRight(a.serverURL(), "/") + "/log/")
			if err != nil {
				return err
			}
			m := &transparency.Monitor{Tiles: tiles, Trust: trust}
			if len(watch) > 0 {
				w := set(watch)
				m.Watch = func(u string) bool { return w[u] }
			}
			if len(known) > 0 {
				k := set(known)
				m.Known = func(f string) bool { return k[strings.ToUpper(f)] }
			}
			for {
				err := monitorOnce(cmd.Context(), m, asJSON)
				if err != nil || once {
					return err
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&watch, "watch", nil, "a user id whose chain events to report (repeatable; default every user)")
	f.StringArrayVar(&known, "known-key", nil, "a key fingerprint expected on the watched chains (repeatable)")
	f.BoolVar(&once, "once", false, "run one pass and exit")
	f.DurationVar(&interval, "interval", 10*time.Second, "time between passes")
	f.BoolVar(&asJSON, "json", false, "print each pass as one JSON document")
	return cmd
}

func set(xs []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[strings.ToUpper(x)] = true
		m[x] = true
	}
	return m
}

// monitorOnce runs one pass and prints what it found. A finding (an
// unknown key, a broken chain, a fork, rollback or map mismatch) is
// clihome.Refused.
func monitorOnce(ctx context.Context, m *transparency.Monitor, asJSON bool) error {
	r, err := m.Run(ctx)
	if err != nil && (errors.Is(err, transparency.ErrMap) || errors.Is(err, transparency.ErrFork) ||
		errors.Is(err, transparency.ErrRollback) || errors.Is(err, transparency.ErrProof)) {
		err = clihome.Refused(fmt.Errorf("log inconsistency: %w", err))
	}
	pass := monitorPass{}
	if r != nil {
		pass.OldSize, pass.NewSize, pass.NewHash = r.Old.N, r.New.N, r.New.Hash.String()
		unknown := map[int64]bool{}
		for _, e := range r.Unknown {
			unknown[e.Index] = true
		}
		for _, e := range r.Chain {
			ev := monitorEvent{Index: e.Index, User: e.User, Unknown: unknown[e.Index], Problem: e.Problem}
			if e.Link != nil {
				ev.Kind, ev.Seq, ev.Action, ev.Key, ev.Signer = "link", e.Link.Seq, e.Link.Action, e.Link.Key, e.Link.Signer
			} else {
				ev.Kind, ev.Epoch = "reset", e.Reset.Epoch
			}
			pass.Events = append(pass.Events, ev)
		}
		if err == nil && (len(r.Unknown) > 0 || len(r.Broken) > 0) {
			err = clihome.Refused(fmt.Errorf("%d unknown key(s) and %d broken chain link(s) in the log", len(r.Unknown), len(r.Broken)))
		}
	}
	if err != nil {
		pass.Error = err.Error()
	}
	if asJSON {
		if perr := clihome.PrintJSON(pass); perr != nil {
			return perr
		}
		return err
	}
	if r != nil {
		fmt.Printf("log checked: size %d -> %d (hash %s)\n", pass.OldSize, pass.NewSize, pass.NewHash)
	}
	for _, e := range pass.Events {
		var note string
		switch {
		case e.Unknown:
			note = "  UNKNOWN KEY"
		case e.Problem != "":
			note = "  BROKEN: " + e.Problem
		}
		if e.Kind == "link" {
			fmt.Printf("leaf %d: user %s chain link %d: %s %s (signed by %s)%s\n", e.Index, e.User, e.Seq, e.Action, e.Key, e.Signer, note)
		} else {
			fmt.Printf("leaf %d: user %s chain reset to epoch %d%s\n", e.Index, e.User, e.Epoch, note)
		}
	}
	return err
}
