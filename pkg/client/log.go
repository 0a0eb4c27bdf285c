package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/atomicfile"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// ErrLog is wrapped by every error of a log check: a chain the log does not
// hold as the server served it, a statement not in the log in time, a
// decision in the user's name that none of the user's devices signed.
// Errors of the log's proofs (transparency.ErrFork, ErrRollback, ErrProof,
// ErrCheckpoint) are wrapped as well.
var ErrLog = errors.New("log check failed")

// DefaultLogTimeout is how long a client waits for a statement to appear
// in the log (the server sequences about every second).
const DefaultLogTimeout = 10 * time.Second

// A HistoryStore remembers, between runs, how far a device has checked a
// user history of the log, so that every later check reads only the new
// entries and a server cannot take back ones already seen.
type HistoryStore interface {
	// History returns the state saved for user's history h, the zero
	// state when there is none.
	History(user string, h transparency.History) (transparency.HistoryState, error)
	SetHistory(user string, h transparency.History, s transparency.HistoryState) error
}

// WithLog makes the client check the transparency log (docs/protocol.md
// §7) with the checkpoints v trusts, advancing trust. A party then checks
// every chain it seals to against the user's chain history and every
// approval and grant it relies on for inclusion; a device checks its own
// chain and every decision made in its user's name (see WithHistoryStore).
// Without WithLog, the log is not checked.
func WithLog(v *transparency.Verifier, trust *transparency.Trust) Option {
	return func(c *Client) { c.logV, c.trust = v, trust }
}

// WithLogTimeout sets how long the log checks wait for a statement the
// server served to appear in the log (default DefaultLogTimeout).
func WithLogTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.logTimeout = d
		}
	}
}

// DefaultLogMaxAge is how old the witnesses' cosignatures of the newest
// checkpoint may be (keyholderd has an idle log's checkpoint cosigned
// again every 10 minutes).
const DefaultLogMaxAge = time.Hour

// WithLogMaxAge sets how long ago the witness quorum may have cosigned the
// checkpoint a proof comes with (default DefaultLogMaxAge; with no
// witnesses configured there is no cosignature time and no bound). An
// older one means the server may be keeping the client on an old view of
// the log: a frozen chain, approvals that never show.
func WithLogMaxAge(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.logMaxAge = d
		}
	}
}

// checkFresh refuses a checkpoint the quorum cosigned too long ago.
func (c *Client) checkFresh(tp transparency.TreeProof) error {
	if c.logV == nil || c.logV.Witnesses() == 0 {
		return nil
	}
	at, err := c.logV.CosignedAt([]byte(tp.Checkpoint))
	if err != nil {
		return err
	}
	maxAge := c.logMaxAge
	if maxAge == 0 {
		maxAge = DefaultLogMaxAge
	}
	if age := time.Since(at); age > maxAge {
		return fmt.Errorf("%w: the log's checkpoint was last cosigned by the witnesses at %s, %s ago (more than %s): the server may be holding this client on an old view of the log",
			transparency.ErrCheckpoint, at.Format(time.RFC3339), age.Truncate(time.Second), maxAge)
	}
	return nil
}

// WithHistoryStore keeps how far the device checked its user's decisions
// history (default: in memory, so a new process checks from the start).
func WithHistoryStore(hs HistoryStore) Option { return func(c *Client) { c.histories = hs } }

// LogEnabled reports whether the client checks the log (WithLog).
func (c *Client) LogEnabled() bool { return c.trust != nil }

func logErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrLog, fmt.Sprintf(format, args...))
}

// errNotYet marks a check that may pass once the log has sequenced more.
var errNotYet = errors.New("not in the log yet")

// errLogAhead marks a chain the log holds more links of than the server
// served: a hidden link, or a link added between the two requests, which
// asking for the chain again tells apart.
var errLogAhead = errors.New("the log holds more of the chain than the server served")

// untilLogged runs check until it returns something other than errNotYet,
// or the log timeout passes.
func (c *Client) untilLogged(ctx context.Context, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, c.logTimeout)
	defer cancel()
	var last error
	err := poll(ctx, c.pollMin, c.pollMax, func() (bool, error) {
		last = check()
		if errors.Is(last, errNotYet) {
			return false, nil
		}
		return true, last
	})
	if err != nil && errors.Is(err, context.DeadlineExceeded) && last != nil {
		return logErr("%s is not in the log after %s: %v", what, c.logTimeout, last)
	}
	return err
}

// fetchLog GETs a proof route with ?from= the trusted size, and decodes
// it. A 404 is errNotYet.
func (c *Client) fetchLog(ctx context.Context, path string, q url.Values, out any) error {
	if q == nil {
		q = url.Values{}
	}
	q.Set("from", fmt.Sprint(c.trust.Tree().N))
	err := c.doJSON(ctx, http.MethodGet, path+"?"+q.Encode(), authNone, nil, out)
	if IsNotFound(err) {
		return fmt.Errorf("%w: %v", errNotYet, err)
	}
	return err
}

// userHistory fetches and verifies user's history h after known, under
// the log lock (the caller holds it).
func (c *Client) userHistory(ctx context.Context, user string, h transparency.History, known transparency.HistoryState) (transparency.HistoryState, []transparency.HistoryEntry, error) {
	path := "/v1/log/users/" + url.PathEscape(user) + "/" + string(h)
	// An answer holds at most a page of entries: VerifyHistory folds a
	// page into a state to continue from (ErrMoreEntries) and checks the
	// fold of all of them against the map with the last page; no entry is
	// returned before that.
	state := known
	var entries []transparency.HistoryEntry
	for {
		var p transparency.HistoryProof
		if err := c.fetchLog(ctx, path, url.Values{"after": {fmt.Sprint(state.Count)}}, &p); err != nil {
			if errors.Is(err, errNotYet) {
				return known, nil, err
			}
			return known, nil, fmt.Errorf("%w: user %s's %s history: %w", ErrLog, user, h, err)
		}
		if err := c.checkFresh(p.TreeProof); err != nil {
			return known, nil, fmt.Errorf("%w: user %s's %s history: %w", ErrLog, user, h, err)
		}
		next, err := c.trust.VerifyHistory(p, user, h, state)
		switch {
		case errors.Is(err, transparency.ErrMoreEntries):
			state, entries = next, append(entries, p.Entries...)
		case err != nil:
			return known, nil, fmt.Errorf("%w: user %s's %s history: %w", ErrLog, user, h, err)
		default:
			return next, append(entries, p.Entries...), nil
		}
	}
}

// checkChainLogged checks that the chain the server served for user is
// the one the log holds: the chain links after the user's last chain
// reset are exactly the served links' leaves, in order. Links the log
// does not hold yet are waited for. It returns the log index of the last
// chain reset (-1 for none).
func (c *Client) checkChainLogged(ctx context.Context, user string, links []api.ChainLink) (int64, error) {
	reset := int64(-1)
	if c.trust == nil {
		return reset, nil
	}
	want := make([][]byte, len(links))
	for i, l := range links {
		leaf, err := transparency.SignedLeaf([]byte(l.Statement), []byte(l.Signature))
		if err != nil {
			return reset, logErr("user %s's chain link %d: %v", user, i, err)
		}
		want[i] = leaf
	}
	err := c.untilLogged(ctx, fmt.Sprintf("user %s's chain (%d links)", user, len(links)), func() error {
		c.logMu.Lock()
		defer c.logMu.Unlock()
		_, entries, err := c.userHistory(ctx, user, transparency.Chain, transparency.HistoryState{})
		if err != nil {
			return err
		}
		// The current chain is what follows the last reset.
		reset = -1
		for i := len(entries) - 1; i >= 0; i-- {
			if _, err := statement.ParseChainReset(entries[i].Leaf); err == nil {
				reset = entries[i].Index
				entries = entries[i+1:]
				break
			}
		}
		for i, e := range entries {
			if i >= len(want) {
				return fmt.Errorf("%w: %w: user %s's chain: the log holds link %d (log index %d), which the server did not serve (it served %d links)",
					ErrLog, errLogAhead, user, i, e.Index, len(want))
			}
			if !bytes.Equal(e.Leaf, want[i]) {
				return logErr("user %s's chain: link %d the server served is not the one the log holds at index %d: a second chain for the user",
					user, i, e.Index)
			}
		}
		if len(entries) < len(want) {
			return fmt.Errorf("%w: the log holds %d of the %d links the server served", errNotYet, len(entries), len(want))
		}
		return nil
	})
	return reset, err
}

// checkLogged checks that the leaf of stmt signed with sig is in the log,
// waiting for it to be sequenced.
func (c *Client) checkLogged(ctx context.Context, what string, stmt, sig []byte) error {
	if c.trust == nil {
		return nil
	}
	leaf, err := transparency.SignedLeaf(stmt, sig)
	if err != nil {
		return logErr("%s: %v", what, err)
	}
	rh := tlog.RecordHash(leaf)
	path := "/v1/log/leaves/" + hex.EncodeToString(rh[:])
	return c.untilLogged(ctx, what, func() error {
		c.logMu.Lock()
		defer c.logMu.Unlock()
		var p transparency.LeafProof
		if err := c.fetchLog(ctx, path, nil, &p); err != nil {
			if errors.Is(err, errNotYet) {
				return err
			}
			return fmt.Errorf("%w: %s: %w", ErrLog, what, err)
		}
		if err := c.checkFresh(p.TreeProof); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrLog, what, err)
		}
		if err := c.trust.VerifyLeaf(p, leaf); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrLog, what, err)
		}
		return nil
	})
}

// checkDecisions checks the new entries of the decisions history of the
// device's user: each must be an approval, rejection or grant signed by a
// device key on ch, the user's verified chain. Entries before the user's
// last chain reset (at log index resetIndex, -1 for none) belong to an
// earlier chain whose keys the device does not hold, and are not checked.
func (c *Client) checkDecisions(ctx context.Context, ch *keychain.State, resetIndex int64) error {
	if c.trust == nil {
		return nil
	}
	user := ch.User()
	c.logMu.Lock()
	defer c.logMu.Unlock()
	known, err := c.histories.History(user, transparency.Decisions)
	if err != nil {
		return fmt.Errorf("reading the decisions state of user %s: %w", user, err)
	}
	// One answer holds every new entry (VerifyHistory wants them all;
	// the server serves up to 1000 per answer).
	st, entries, err := c.userHistory(ctx, user, transparency.Decisions, known)
	if errors.Is(err, errNotYet) {
		return logErr("user %s's decisions history: %v", user, err)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Index < resetIndex {
			continue
		}
		if err := decidedByChain(ch, e); err != nil {
			return err
		}
		// Every approval of the user is learnt here, not only those the
		// server lists: a copy of an approved record's key packets is
		// then refused by every device (issue 7's attack, closed by the
		// log).
		if stmt, _, err := transparency.SplitLeaf(e.Leaf); err == nil {
			if a, err := statement.ParseApproval(stmt); err == nil {
				if err := c.rememberApproval(a); err != nil {
					return err
				}
			}
		}
	}
	if err := c.histories.SetHistory(user, transparency.Decisions, st); err != nil {
		return fmt.Errorf("saving the decisions state of user %s: %w", user, err)
	}
	return nil
}

// decidedByChain checks that entry e of a decisions history is a decision
// signed by a device on ch.
func decidedByChain(ch *keychain.State, e transparency.HistoryEntry) error {
	alarm := func(format string, args ...any) error {
		return logErr("ALARM: user %s's decisions history, log index %d: %s", ch.User(), e.Index, fmt.Sprintf(format, args...))
	}
	stmt, sig, err := transparency.SplitLeaf(e.Leaf)
	if err != nil || sig == nil {
		return alarm("not a signed statement")
	}
	s, err := statement.ParseStatement(stmt)
	if err != nil {
		return alarm("%v", err)
	}
	var keys []*envelope.Key
	switch s := s.(type) {
	case *statement.Approval:
		keys, err = deviceKey(ch, s.Device)
	case *statement.Rejection:
		keys, err = deviceKey(ch, s.Device)
	case *statement.Grant:
		keys = ch.Devices() // a grant names no device
	default:
		return alarm("a %T is not a decision", s)
	}
	if err != nil {
		return alarm("%s: %v", kindName(s), err)
	}
	for _, k := range keys {
		if statement.Verify(stmt, sig, k) == nil {
			return nil
		}
	}
	return alarm("%s not signed by any device on the user's key chain", kindName(s))
}

func deviceKey(ch *keychain.State, fpr string) ([]*envelope.Key, error) {
	m, ok := ch.Device(fpr)
	if !ok {
		return nil, fmt.Errorf("made by device %s, which is not on the user's key chain", fpr)
	}
	return []*envelope.Key{m.Key}, nil
}

func kindName(s any) string {
	n := fmt.Sprintf("%T", s)
	return strings.ToLower(n[strings.LastIndex(n, ".")+1:])
}

// MemoryHistories is a HistoryStore in memory.
type MemoryHistories struct {
	mu sync.Mutex
	m  map[string]transparency.HistoryState
}

func (m *MemoryHistories) History(user string, h transparency.History) (transparency.HistoryState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[string(h)+"/"+user], nil
}

func (m *MemoryHistories) SetHistory(user string, h transparency.History, s transparency.HistoryState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]transparency.HistoryState{}
	}
	m.m[string(h)+"/"+user] = s
	return nil
}

// FileHistories is a HistoryStore keeping one JSON file per user history
// in a directory (created on first write).
type FileHistories struct{ Dir string }

type historyFile struct {
	Count int64  `json:"count"`
	Value string `json:"value"`
}

func (f FileHistories) path(user string, h transparency.History) (string, error) {
	if user == "" || strings.ContainsAny(user, `/\.`) || (h != transparency.Chain && h != transparency.Decisions) {
		return "", fmt.Errorf("invalid user history %q %q", user, h)
	}
	return filepath.Join(f.Dir, user+"."+string(h)+".json"), nil
}

func (f FileHistories) History(user string, h transparency.History) (transparency.HistoryState, error) {
	var s transparency.HistoryState
	p, err := f.path(user, h)
	if err != nil {
		return s, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	var hf historyFile
	if err := json.Unmarshal(b, &hf); err != nil {
		return s, fmt.Errorf("%s: %w", p, err)
	}
	v, errHex := hex.DecodeString(hf.Value)
	if errHex != nil || len(v) != 32 || hf.Count < 0 {
		return s, fmt.Errorf("%s: not a history state", p)
	}
	s.Count = hf.Count
	copy(s.Value[:], v)
	return s, nil
}

func (f FileHistories) SetHistory(user string, h transparency.History, s transparency.HistoryState) error {
	p, err := f.path(user, h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(historyFile{Count: s.Count, Value: hex.EncodeToString(s.Value[:])})
	if err != nil {
		return err
	}
	_, err = atomicfile.Write(p, bytes.NewReader(append(b, '\n')), 0o600)
	return err
}
