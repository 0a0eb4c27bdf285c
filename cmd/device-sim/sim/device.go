package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/client"
	"github.com/keyholder/keyholder/pkg/statement"
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
	// decided holds the answers chosen for requests whose answer could not
	// be sent yet (a transient error): a retry sends the same answer
	// without asking the user again.
	decided map[string]string
}

func newDeviceRunner(cfg *config, c *client.Client, pol *Policy, p *pins) *device {
	return &device{cfg: cfg, c: c, pol: pol, pins: p, workers: 1,
		handled: map[string]bool{}, inflight: map[string]bool{}, decided: map[string]string{}}
}

func (d *device) mark(id string, v bool) {
	d.mu.Lock()
	d.handled[id] = v
	delete(d.decided, id)
	d.mu.Unlock()
}

func (d *device) isHandled(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.handled[id]
}

// logOut receives the log lines (stdout, plus --log FILE).
var logOut io.Writer = os.Stdout

func logf(format string, args ...any) {
	fmt.Fprintf(logOut, "device-sim: "+format+"\n", args...)
}

// checkLog checks, on every connect, that the user's chain in the log is
// the one the device knows and that every decision made in the user's name
// since the last check is one of its devices' (client.OwnChain with the
// log). A failure is an alarm: the device stops.
func (d *device) checkLog(ctx context.Context) error {
	if !d.c.LogEnabled() {
		return nil
	}
	err := retry(ctx, func() error {
		_, err := d.c.OwnChain(ctx)
		return err
	})
	if err != nil {
		logf("ALARM: %s", clihome.OneLine(err))
		return err
	}
	logf("log checked: the user's key chain and decisions are this user's devices'")
	return nil
}

func (d *device) run(ctx context.Context) error {
	logf("device %s of user %s, listening on %s", d.cfg.Fingerprint, d.cfg.UserID, d.cfg.Server)
	if err := d.checkLog(ctx); err != nil {
		return err
	}
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	first := true
	events := d.c.Subscribe(ctx, client.SubscribeOptions{
		OnConnect: func() {
			logf("connected to the push channel")
			if first {
				first = false // checked just before
				return
			}
			go func() {
				if err := d.checkLog(ctx); err != nil && ctx.Err() == nil {
					cancel(err)
				}
			}()
		},
		OnError: func(err error, wait time.Duration) {
			logf("push channel lost (%s); reconnecting in %s", clihome.OneLine(err), wait.Round(time.Millisecond))
		},
	})
	ids := make(chan string)
	go func() {
		defer close(ids)
		for ev := range events {
			select {
			case ids <- ev.RequestID:
			case <-ctx.Done():
				return
			}
		}
	}()
	d.serve(ctx, ids, false)
	logf("stopped")
	if parent.Err() == nil && ctx.Err() != nil {
		return context.Cause(ctx) // the alarm of a check on reconnect
	}
	return nil
}

func (d *device) runOnce(ctx context.Context) error {
	if err := d.checkLog(ctx); err != nil {
		return err
	}
	var reqs []string
	err := retry(ctx, func() error {
		// Every page: --once answers all that is open.
		rs, err := client.All(ctx, api.Page{Limit: api.MaxPageSize}, d.c.DeviceRequestsPage)
		reqs = reqs[:0]
		for _, r := range rs {
			reqs = append(reqs, r.ID)
		}
		return err
	})
	if err != nil {
		return err
	}
	ids := make(chan string, len(reqs))
	for _, id := range reqs {
		ids <- id
	}
	close(ids)
	d.serve(ctx, ids, true)
	return nil
}

// Retry timing of one request: the wait doubles from retryMin up to
// retryMax; after retryFor without success the request is left for the
// next time the server pushes it (a reconnect replays every open request).
const (
	retryMin = 250 * time.Millisecond
	retryMax = 5 * time.Second
	retryFor = 2 * time.Minute
)

// retry calls fn until it succeeds, fails with an error that is not
// transient (client.IsTransient: only network errors, 5xx and 429 are),
// or retryFor passes. A local error or a 4xx is returned at once.
func retry(ctx context.Context, fn func() error) error {
	wait := retryMin
	deadline := time.Now().Add(retryFor)
	for {
		err := fn()
		if err == nil || !client.IsTransient(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, retryMax)
	}
}

// serve handles the request ids that arrive on in, at most d.workers at a
// time (one when it asks the user), each request by one worker only. A
// request that meets a transient error gives its worker back and is tried
// again after a back-off, so one request never holds the others. With
// once set, serve returns when in is closed and every request is done or
// given up; otherwise when ctx ends.
func (d *device) serve(ctx context.Context, in <-chan string, once bool) {
	workers := d.workers
	if workers < 1 || d.prompt != nil {
		workers = 1
	}
	type result struct {
		id    string
		retry bool
	}
	results := make(chan result)
	again := make(chan string)
	var queue []string
	type backoff struct {
		wait  time.Duration
		since time.Time
	}
	retries := map[string]*backoff{}
	running, waiting := 0, 0
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(id string) {
		d.mu.Lock()
		skip := d.handled[id] || d.inflight[id]
		d.mu.Unlock()
		if skip {
			return
		}
		if running >= workers {
			queue = append(queue, id)
			return
		}
		d.mu.Lock()
		d.inflight[id] = true
		d.mu.Unlock()
		running++
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := d.handle(ctx, id)
			d.mu.Lock()
			delete(d.inflight, id)
			d.mu.Unlock()
			select {
			case results <- result{id, r}:
			case <-ctx.Done():
			}
		}()
	}
	for {
		if once && in == nil && running == 0 && waiting == 0 && len(queue) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case id, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			start(id)
		case id := <-again:
			waiting--
			start(id)
		case r := <-results:
			running--
			if !r.retry {
				delete(retries, r.id)
			} else {
				b := retries[r.id]
				if b == nil {
					b = &backoff{wait: retryMin, since: time.Now()}
					retries[r.id] = b
				}
				if time.Since(b.since) > retryFor {
					delete(retries, r.id)
					logf("request %s: giving up for now; it is tried again when the server pushes it again", r.id)
				} else {
					waiting++
					id, wait := r.id, b.wait
					b.wait = min(b.wait*2, retryMax)
					time.AfterFunc(wait, func() {
						select {
						case again <- id:
						case <-ctx.Done():
						}
					})
				}
			}
			for len(queue) > 0 && running < workers {
				id := queue[0]
				queue = queue[1:]
				start(id)
			}
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

// transient logs a transient failure of request id; the caller then
// returns true, so that serve tries the request again after a back-off.
func transient(id, what string, err error) bool {
	logf("request %s: %s: %s (trying again shortly)", id, what, clihome.OneLine(err))
	return true
}

// failed ends the handling of a request that failed the device's own
// checks, or whose answer could not be made here: such an error is the
// same on every attempt, so the request is never retried and never holds
// the others. It is the one place where the device answers such a
// request: a failed check (client.ErrVerification, or a *CheckError of
// the answer, such as a session key seen with another record, or a
// requester key that cannot receive the record) is answered by
// answerFailed, so the party learns at once. Any other local error (the
// device's own key cannot sign, say) is logged and the request left open.
func (d *device) failed(ctx context.Context, det *api.RequestDetail, err error) {
	d.mark(det.ID, true)
	if !errors.Is(err, client.ErrVerification) && client.ReasonOf(err) == "" {
		logf("request %s: answering it failed here, not retried: %s", det.ID, clihome.OneLine(err))
		return
	}
	logf("request %s FAILED the device's checks: %s", det.ID, clihome.OneLine(err))
	d.answerFailed(ctx, det, err)
}

// handle makes one attempt at request id: fetch, check, decide, answer.
// It reports whether the request should be tried again later (a transient
// error: the network, a 5xx); anything else ends its handling here.
func (d *device) handle(ctx context.Context, id string) (again bool) {
	if d.isHandled(id) || ctx.Err() != nil {
		return false
	}
	x, err := d.c.DeviceRequest(ctx, id)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return false
	case client.IsNotFound(err):
		d.mark(id, true)
		return false
	case client.IsTransient(err):
		return transient(id, "fetching it failed", err)
	default:
		d.mark(id, true)
		logf("request %s: fetching it failed: %s", id, clihome.OneLine(err))
		return false
	}
	if x.State != "open" {
		d.mark(id, true)
		return false
	}
	cr, err := d.c.Check(ctx, x)
	switch {
	case err == nil:
	case errors.Is(err, client.ErrVerification):
		d.failed(ctx, x, err)
		return false
	case ctx.Err() != nil:
		return false
	case client.IsTransient(err):
		return transient(id, "checking it failed (the key chain could not be fetched)", err)
	default:
		d.mark(id, true)
		logf("request %s: checking it failed: %s", id, clihome.OneLine(err))
		return false
	}
	if cr.Detail.Kind == client.KindDevice {
		d.deviceRequest(ctx, cr)
		return false
	}
	decision, rule, ok := d.decide(ctx, cr)
	if !ok {
		return false
	}
	if d.delay > 0 {
		logf("  (answering in %s)", d.delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d.delay):
		}
	}
	switch err := d.answer(ctx, cr, decision, rule); {
	case err == nil:
		d.mark(id, true)
		logf("  → %s", outcome(decision, cr))
	case ctx.Err() != nil:
	case client.IsConflict(err):
		d.mark(id, true)
		logf("  → already answered or closed (%s)", clihome.OneLine(err))
	case client.IsTransient(err):
		d.mu.Lock()
		d.decided[id] = decision
		d.mu.Unlock()
		return transient(id, "sending the answer failed", err)
	case client.StatusOf(err) == 0:
		d.failed(ctx, x, err) // made here: the same on every attempt
	default:
		d.mark(id, true)
		logf("  → answering failed: %s", clihome.OneLine(err))
	}
	return false
}

// decide shows the request and returns the answer: one chosen before
// (its sending failed), the pins' verdict, the policy's or the user's.
// ok is false when the request stays open unanswered.
func (d *device) decide(ctx context.Context, cr *client.CheckedRequest) (decision string, rule Rule, ok bool) {
	det := cr.Detail
	var name, fpr string
	if det.Kind == client.KindAccess {
		name, fpr = det.RequesterName, det.RequesterFingerprint
	} else {
		name, fpr = det.SubmitterName, det.SubmitterFingerprint
	}
	rule = d.pol.rule(name, fpr)
	d.mu.Lock()
	decision = d.decided[det.ID]
	d.mu.Unlock()
	if decision != "" {
		return decision, rule, true
	}
	d.describe(cr)
	d.mu.Lock()
	perr := d.pins.check(name, fpr)
	d.mu.Unlock()
	if perr != nil {
		logf("  %s", clihome.OneLine(perr))
		decision = reject
		if det.Kind == client.KindAccess {
			decision = refuse
		}
	}
	if decision == "" {
		if det.Kind == client.KindAccess {
			decision = rule.Reads
		} else {
			decision = rule.Submissions
		}
	}
	if decision == askUser {
		if d.prompt == nil {
			logf("  → left open: the policy says ask, and there is no terminal to ask on")
			d.mark(det.ID, true)
			return "", rule, false
		}
		q := "Approve this record?"
		if det.Kind == client.KindAccess {
			q = fmt.Sprintf("Let %q read this record?", name)
		}
		yes, err := d.prompt.ask(ctx, q)
		if err != nil {
			return "", rule, false // stopping: the request stays open
		}
		switch {
		case det.Kind == client.KindAccess && yes:
			decision = grant
		case det.Kind == client.KindAccess:
			decision = refuse
		case yes:
			decision = approve
		default:
			decision = reject
		}
	}
	return decision, rule, true
}

// answer sends the decision, once.
func (d *device) answer(ctx context.Context, cr *client.CheckedRequest, decision string, rule Rule) error {
	var err error
	switch decision {
	case approve:
		_, err = d.c.ApproveRequest(ctx, cr)
	case reject:
		_, err = d.c.RejectRequest(ctx, cr.Detail, statement.ReasonDeclined)
	case grant:
		_, err = d.c.GrantRequest(ctx, cr, rule.grantExpiry())
	case refuse:
		_, err = d.c.Refuse(ctx, cr.Detail.ID)
	default:
		err = fmt.Errorf("unknown decision %q", decision)
	}
	return err
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
			reason = statement.ReasonSubmission
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
