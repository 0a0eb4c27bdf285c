package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/envelope"
)

type device struct {
	cfg     *config
	c       *client.Client
	pol     *Policy
	pins    *pins
	prompt  *prompter
	delay   time.Duration
	workers int

	mu       sync.Mutex
	handled  map[string]bool
	inflight map[string]bool
}

func (d *device) mark(id string, v bool) {
	d.mu.Lock()
	d.handled[id] = v
	d.mu.Unlock()
}

// logOut receives the log lines (stdout, plus --log FILE).
var logOut io.Writer = os.Stdout

func logf(format string, args ...any) {
	fmt.Fprintf(logOut, "device-sim: "+format+"\n", args...)
}

func (d *device) run(ctx context.Context) error {
	logf("device %s of user %s, listening on %s", d.cfg.Fingerprint, d.cfg.UserID, d.cfg.Server)
	events := d.c.Subscribe(ctx, client.SubscribeOptions{
		OnConnect: func() { logf("connected to the push channel") },
		OnError: func(err error, wait time.Duration) {
			logf("push channel lost (%s); reconnecting in %s", clihome.OneLine(err), wait.Round(time.Millisecond))
		},
	})
	if d.workers <= 1 || d.prompt != nil {
		for ev := range events {
			d.handle(ctx, ev.RequestID)
		}
		logf("stopped")
		return nil
	}
	// Several requests at once (automatic policies only): a request is
	// never handled by two workers, and replays of handled ones are skipped.
	sem := make(chan struct{}, d.workers)
	var wg sync.WaitGroup
	for ev := range events {
		id := ev.RequestID
		d.mu.Lock()
		busy := d.handled[id] || d.inflight[id]
		if !busy {
			d.inflight[id] = true
		}
		d.mu.Unlock()
		if busy {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() {
				d.mu.Lock()
				delete(d.inflight, id)
				d.mu.Unlock()
				<-sem
				wg.Done()
			}()
			d.handle(ctx, id)
		}()
	}
	wg.Wait()
	logf("stopped")
	return nil
}

func (d *device) runOnce(ctx context.Context) error {
	var reqs []string
	err := retry(ctx, func() error {
		rs, err := d.c.DeviceRequests(ctx)
		for _, r := range rs {
			reqs = append(reqs, r.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, id := range reqs {
		d.handle(ctx, id)
	}
	return nil
}

// retry calls fn until it succeeds, fails with a client error (4xx), or
// two minutes pass: network errors and 5xx (a restarting server) are
// retried with back-off.
func retry(ctx context.Context, fn func() error) error {
	wait := 250 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if s := client.StatusOf(err); s != 0 && s < 500 {
			return err
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait *= 2; wait > 5*time.Second {
			wait = 5 * time.Second
		}
	}
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func (d *device) handle(ctx context.Context, id string) {
	d.mu.Lock()
	done := d.handled[id]
	d.mu.Unlock()
	if done || ctx.Err() != nil {
		return
	}
	var cr *client.CheckedRequest
	err := retry(ctx, func() error {
		x, err := d.c.DeviceRequest(ctx, id)
		if err != nil {
			return err
		}
		if x.State != "open" {
			d.mark(id, true)
			return nil
		}
		var cerr error
		cr, cerr = d.c.Check(ctx, x)
		if cerr != nil && !errors.Is(cerr, client.ErrVerification) {
			return cerr // the chain could not be fetched: retried
		}
		if cerr != nil {
			d.mark(id, true)
			logf("request %s FAILED the device's checks: %s", id, clihome.OneLine(cerr))
			d.answerFailed(ctx, x, cerr)
		}
		return nil
	})
	if err != nil {
		if client.IsNotFound(err) {
			d.mark(id, true)
			return
		}
		if ctx.Err() == nil {
			logf("request %s: %s (will retry when it is pushed again)", id, clihome.OneLine(err))
		}
		return
	}
	if cr == nil {
		return
	}
	det2 := cr.Detail
	if det2.Kind == client.KindDevice {
		d.deviceRequest(ctx, cr)
		return
	}
	var name, fpr string
	if det2.Kind == client.KindAccess {
		name, fpr = det2.RequesterName, det2.RequesterFingerprint
	} else {
		name, fpr = det2.SubmitterName, det2.SubmitterFingerprint
	}
	d.describe(cr)
	decision := ""
	d.mu.Lock()
	perr := d.pins.check(name, fpr)
	d.mu.Unlock()
	if err := perr; err != nil {
		logf("  %s", clihome.OneLine(err))
		decision = reject
		if det2.Kind == client.KindAccess {
			decision = refuse
		}
	}
	rule := d.pol.rule(name, fpr)
	if decision == "" {
		if det2.Kind == client.KindAccess {
			decision = rule.Reads
		} else {
			decision = rule.Submissions
		}
	}
	if decision == askUser {
		if d.prompt == nil {
			logf("  → left open: the policy says ask, and there is no terminal to ask on")
			d.mark(id, true)
			return
		}
		q := "Approve this record?"
		if det2.Kind == client.KindAccess {
			q = fmt.Sprintf("Let %q read this record?", name)
		}
		yes, err := d.prompt.ask(ctx, q)
		if err != nil {
			return // stopping: the request stays open
		}
		switch {
		case det2.Kind == client.KindAccess && yes:
			decision = grant
		case det2.Kind == client.KindAccess:
			decision = refuse
		case yes:
			decision = approve
		default:
			decision = reject
		}
	}
	if d.delay > 0 {
		logf("  (answering in %s)", d.delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.delay):
		}
	}
	var checkFail error
	err = retry(ctx, func() error {
		var err error
		switch decision {
		case approve:
			_, err = d.c.ApproveRequest(ctx, cr)
		case reject:
			_, err = d.c.RejectRequest(ctx, cr.Detail, envelope.ReasonDeclined)
		case grant:
			_, err = d.c.GrantRequest(ctx, cr, rule.grantExpiry())
		case refuse:
			_, err = d.c.Refuse(ctx, cr.Detail.ID)
		default:
			err = fmt.Errorf("unknown decision %q", decision)
		}
		if client.ReasonOf(err) != "" {
			checkFail = err // the device's own check: not retried
			return nil
		}
		return err
	})
	d.mark(id, true)
	if checkFail != nil {
		// The decision's own check failed (a session key seen with
		// another record): answer as for a failed check.
		logf("  → FAILED the device's checks: %s", clihome.OneLine(checkFail))
		d.answerFailed(ctx, cr.Detail, checkFail)
		return
	}
	switch {
	case err == nil:
		logf("  → %s", outcome(decision, cr))
	case client.IsConflict(err):
		logf("  → already answered or closed (%s)", clihome.OneLine(err))
	case errors.Is(err, context.Canceled):
	default:
		d.mark(id, client.StatusOf(err) != 0 && client.StatusOf(err) < http.StatusInternalServerError)
		logf("  → answering failed: %s", clihome.OneLine(err))
	}
}

// answerFailed answers a request that failed the device's checks, so the
// party learns at once instead of waiting out the request: a submission is
// rejected with a signed statement of the reason, an access request is
// refused (nothing is re-wrapped). A device request is left to expire.
func (d *device) answerFailed(ctx context.Context, det *api.RequestDetail, cause error) {
	var err error
	switch det.Kind {
	case client.KindApproval:
		reason := client.ReasonOf(cause)
		if reason == "" {
			reason = envelope.ReasonSubmission
		}
		_, err = d.c.RejectRequest(ctx, det, reason)
		if err == nil {
			logf("  → rejected (reason %s): signed the rejection statement", reason)
		}
	case client.KindAccess:
		_, err = d.c.Refuse(ctx, det.ID)
		if err == nil {
			logf("  → refused: nothing re-wrapped")
		}
	default:
		return
	}
	if err != nil {
		logf("  → answering failed: %s", clihome.OneLine(err))
	}
}

// deviceRequest handles a request to add a device: the user must compare
// the code the new device shows, so only device-sim approve-device CODE
// (or the terminal prompt, where the user types the code) approves it.
func (d *device) deviceRequest(ctx context.Context, cr *client.CheckedRequest) {
	logf("device request %s: a new device asks to join user %s (key %s)", cr.Detail.ID, cr.Detail.UserID, cr.NewDevice.Fingerprint())
	if d.prompt == nil {
		logf("  → left open: compare the code the new device shows and run: device-sim approve-device CODE")
		d.mark(cr.Detail.ID, true)
		return
	}
	typed, err := d.prompt.line(ctx, "Type the code the new device shows (empty to refuse): ")
	if err != nil {
		return
	}
	d.mark(cr.Detail.ID, true)
	if !cr.MatchesCode(typed) {
		if _, err := d.c.Refuse(ctx, cr.Detail.ID); err != nil {
			logf("  → refusing failed: %s", clihome.OneLine(err))
			return
		}
		logf("  → refused: the code typed is not the new device's")
		return
	}
	if _, err := d.c.AddDevice(ctx, cr, typed); err != nil {
		logf("  → adding the device failed: %s", clihome.OneLine(err))
		return
	}
	logf("  → added: signed the add-device link of the user's key chain")
}

func outcome(decision string, cr *client.CheckedRequest) string {
	switch decision {
	case approve:
		return "approved: signed the approval statement with the device key"
	case reject:
		return "rejected: signed the rejection statement; the server deletes the ciphertext"
	case grant:
		exp := ""
		if cr.Detail.GrantExpires != nil {
			exp = " (at most until " + cr.Detail.GrantExpires.Format(time.RFC3339) + ")"
		}
		return fmt.Sprintf("granted%s: re-wrapped this record's session key to %s and signed the grant; the record body never came to the device", exp, short(cr.Detail.RequesterFingerprint))
	case refuse:
		return "refused"
	}
	return decision
}

func (d *device) describe(cr *client.CheckedRequest) {
	det := cr.Detail
	title := "(no private metadata)"
	if cr.Private != nil {
		var parts []string
		if cr.Private.Title != "" {
			parts = append(parts, fmt.Sprintf("%q", cr.Private.Title))
		}
		if cr.Private.Filename != "" {
			parts = append(parts, "file "+cr.Private.Filename)
		}
		title = strings.Join(parts, ", ") + " (private metadata, decrypted on the device)"
	}
	if det.Kind == client.KindAccess {
		logf("access request %s: %q (key %s) asks to read record %s", det.ID, det.RequesterName, det.RequesterFingerprint, det.RecordID)
		logf("  record:   %s, from %q", title, det.SubmitterName)
		logf("  purpose:  %q", det.Purpose)
		if det.GrantExpires != nil {
			logf("  until:    %s", det.GrantExpires.Format(time.RFC3339))
		}
		logf("  checks:   the record's approval by device %s of the user's key chain binds this key packet and session key; requester key matches its fingerprint; submission signature valid", short(cr.ApprovalKey.Fingerprint()))
		return
	}
	logf("approval request %s: record %s", det.ID, det.RecordID)
	logf("  from:     %q (key %s)", det.SubmitterName, det.SubmitterFingerprint)
	logf("  title:    %s", title)
	logf("  content:  %s, %s declared; ciphertext %s, sha256 %s", cr.Metadata.ContentType, mib(cr.Metadata.Size), mib(det.CiphertextSize), short(det.CiphertextSHA256))
	if cr.Metadata.Purpose != "" {
		logf("  purpose:  %q", cr.Metadata.Purpose)
	}
	logf("  checks:   key packet opens with this device's key; submitter's signature over key packets, ciphertext hash and metadata is valid")
}
