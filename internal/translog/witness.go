package translog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// A Witness is a C2SP tlog-witness the log asks to cosign its checkpoints.
type Witness struct {
	// URL is the witness's prefix: requests go to URL + "/add-checkpoint".
	URL      string
	Verifier note.Verifier
	client   *http.Client
	known    int64 // the size the witness last cosigned (its "old")
}

// ParseWitness reads "URL=VKEY", where VKEY is the witness's cosignature/v1
// verifier key (c2sp.org/tlog-cosignature).
func ParseWitness(s string) (*Witness, error) {
	u, vkey, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(u, "http") {
		return nil, fmt.Errorf("translog: witness %q is not URL=VKEY", s)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("translog: witness %s: verifier key: %w", u, err)
	}
	return &Witness{URL: strings.TrimRight(u, "/"), Verifier: v, client: &http.Client{Timeout: 10 * time.Second}}, nil
}

// errConflict is the witness saying it knows another size (409).
type errConflict struct{ known int64 }

func (e *errConflict) Error() string { return fmt.Sprintf("witness knows tree size %d", e.known) }

// cosign asks w to cosign the signed checkpoint and returns its
// verified cosignature line(s). proof proves the checkpoint consistent
// with w.known.
func (w *Witness) cosign(ctx context.Context, signed []byte, proof tlog.TreeProof) ([]byte, error) {
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", w.known)
	for _, h := range proof {
		fmt.Fprintf(&body, "%s\n", h)
	}
	body.WriteString("\n")
	body.Write(signed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+"/add-checkpoint", &body)
	if err != nil {
		return nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", w.Verifier.Name(), err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("witness %s: reading answer: %w", w.Verifier.Name(), err)
	}
	switch {
	case resp.StatusCode == http.StatusConflict:
		k, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil || k < 0 {
			return nil, fmt.Errorf("witness %s: conflict without a size", w.Verifier.Name())
		}
		return nil, &errConflict{k}
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("witness %s: %s: %s", w.Verifier.Name(), resp.Status, bytes.TrimSpace(out))
	}
	// The answer is signature lines; check them before anyone relies on
	// them, and keep only the witness's own: any other line would be
	// served to every reader, and one in the log's name that does not
	// verify would make every client refuse the checkpoint.
	cosigned := append(append([]byte(nil), signed...), out...)
	text, _, _ := bytes.Cut(signed, []byte("\n\n"))
	n2, err := note.Open(cosigned, note.VerifierList(w.Verifier))
	if err != nil || n2.Text != string(text)+"\n" {
		return nil, fmt.Errorf("witness %s: cosignature does not verify", w.Verifier.Name())
	}
	var lines []byte
	for _, s := range n2.Sigs {
		if s.Name == w.Verifier.Name() && s.Hash == w.Verifier.KeyHash() {
			lines = fmt.Appendf(lines, "— %s %s\n", s.Name, s.Base64)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("witness %s: no cosignature in the answer", w.Verifier.Name())
	}
	return lines, nil
}

// Publish asks the witnesses to cosign the newest signed checkpoint not yet
// published and publishes it once the quorum did; when the newest is
// published and its cosignatures are older than Refresh (an idle log), it
// asks them to cosign it again. Without witnesses, Sequence publishes
// directly and this does nothing.
func (l *Log) Publish(ctx context.Context) error {
	if len(l.cfg.Witnesses) == 0 {
		return nil
	}
	l.witness.Lock()
	defer l.witness.Unlock()
	db := l.st.DB(ctx)
	var cps []store.LogCheckpoint
	if err := db.Order("size DESC").Limit(1).Find(&cps).Error; err != nil {
		return fmt.Errorf("translog: reading checkpoints: %w", err)
	}
	if len(cps) == 0 {
		return nil
	}
	cp := cps[0]
	if cp.Published {
		if !l.stale(cp.Note) {
			return nil
		}
		// Ask again with the log's signature only (Ed25519 signs
		// deterministically: the same line as the stored one).
		text, _, _ := bytes.Cut(cp.Note, []byte("\n\n"))
		signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, l.cfg.Signer)
		if err != nil {
			return fmt.Errorf("translog: signing checkpoint: %w", err)
		}
		cp.Note = signed
	}
	hr := &dbHashes{ctx: ctx, db: db}
	var sigs [][]byte
	var errs []error
	for _, w := range l.cfg.Witnesses {
		sig, err := l.askWitness(ctx, w, cp, hr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) < l.cfg.Quorum {
		return fmt.Errorf("translog: checkpoint %d has %d of %d cosignatures: %w", cp.Size, len(sigs), l.cfg.Quorum, errors.Join(errs...))
	}
	signed := cp.Note
	for _, s := range sigs {
		signed = append(signed, s...)
	}
	return db.Transaction(func(tx *gorm.DB) error {
		return tx.Model(&store.LogCheckpoint{}).Where("size = ?", cp.Size).
			Updates(map[string]any{"note": signed, "published": true}).Error
	})
}

// stale reports whether a published checkpoint's quorum of cosignatures
// is older than Refresh.
func (l *Log) stale(signed []byte) bool {
	if l.cfg.Refresh < 0 {
		return false
	}
	vs := make([]note.Verifier, len(l.cfg.Witnesses))
	for i, w := range l.cfg.Witnesses {
		vs[i] = w.Verifier
	}
	n, err := note.Open(signed, note.VerifierList(vs...))
	if err != nil {
		return true
	}
	at, err := transparency.QuorumCosignedAt(n, l.cfg.Quorum)
	return err != nil || l.st.Now().Sub(at) >= l.cfg.Refresh
}

func (l *Log) askWitness(ctx context.Context, w *Witness, cp store.LogCheckpoint, hr tlog.HashReader) ([]byte, error) {
	for range 2 {
		if w.known > cp.Size {
			return nil, fmt.Errorf("witness %s knows size %d, beyond this log's %d: another replica published a newer checkpoint (then the next round catches up), or this log was rolled back", w.Verifier.Name(), w.known, cp.Size)
		}
		var proof tlog.TreeProof
		if w.known > 0 && w.known < cp.Size {
			var err error
			if proof, err = tlog.ProveTree(cp.Size, w.known, hr); err != nil {
				return nil, fmt.Errorf("translog: consistency proof %d→%d: %w", w.known, cp.Size, err)
			}
		}
		sig, err := w.cosign(ctx, cp.Note, proof)
		var c *errConflict
		if errors.As(err, &c) {
			w.known = c.known
			continue
		}
		if err != nil {
			return nil, err
		}
		w.known = cp.Size
		return sig, nil
	}
	return nil, fmt.Errorf("witness %s: conflicting sizes twice", w.Verifier.Name())
}
