package server

import (
	"context"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/pkg/api"
)

// A party waiting for a device's answer (api.QueryWait) is woken through
// the same channel as a device's event stream: a subscription to the
// local hub, which the PostgreSQL broadcaster feeds from every replica.
// The answer's handler wakes the waiters after its commit; a waiter that
// is not woken (a missed notification, an expiry, which wakes nobody)
// reads the state again when its time is up, so it is late, never wrong.

// decidedKey and answeredKey name the hub subscriptions of the parties
// waiting for a record's decision and for an access request's answer. A
// device id has no colon, so they meet no device's stream.
func decidedKey(recordID string) string   { return "decided:" + recordID }
func answeredKey(requestID string) string { return "answered:" + requestID }

// waitOf reads the wait query parameter (0 without one).
func waitOf(c echo.Context) (time.Duration, error) {
	v := c.QueryParam(api.QueryWait)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > api.MaxWaitSeconds {
		return 0, badRequest("wait must be a whole number of seconds from 1 to " + strconv.Itoa(api.MaxWaitSeconds))
	}
	return time.Duration(n) * time.Second, nil
}

// subscribe returns the wake-ups of key when the request waits (nil
// when it does not, or cannot: no hub, or the party already holds
// Config.MaxWaitsPerParty waits, so it is answered at once) and the
// function that ends the subscription. A handler subscribes before it
// reads the state, so an answer committed in between is not missed.
func (s *Server) subscribe(party, key string, wait time.Duration) (<-chan push.Event, func()) {
	if wait <= 0 || s.hub == nil || !s.waitSlots.acquire(party) {
		return nil, func() {}
	}
	events, cancel := s.hub.Subscribe(key)
	return events, func() { cancel(); s.waitSlots.release(party) }
}

// sleep waits for a wake-up, for wait, or until expires (an expiry wakes
// nobody), whichever comes first; the caller then reads the state again.
func (s *Server) sleep(ctx context.Context, woken <-chan push.Event, wait time.Duration, expires time.Time) error {
	if left := expires.Sub(s.now()) + time.Second/10; left < wait {
		wait = max(left, 0)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-woken: // or closed: a resync; either way, read again
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// readAwaiting reads with read; when the request waits (woken) and
// pending says the answer is still to come (until expires), it sleeps
// until woken and reads once more. Every waiting GET runs these steps.
func readAwaiting[T any](s *Server, ctx context.Context, woken <-chan push.Event, wait time.Duration,
	read func() (T, error), pending func(T) (bool, time.Time)) (T, error) {
	v, err := read()
	if err != nil || woken == nil {
		return v, err
	}
	if open, expires := pending(v); open {
		if err := s.sleep(ctx, woken, wait, expires); err != nil {
			return v, err
		}
		return read()
	}
	return v, nil
}

// wake tells the parties waiting on key, on every replica, that id (the
// record or request) was answered. It is sent after the commit by the
// push workers, like a push.
func (s *Server) wake(key, id string) {
	if s.waker == nil {
		return
	}
	s.enqueuePush(pushJob{wake: key, requestID: id})
}

// maxWakeBatch bounds the wake-ups sent in one NOTIFY statement.
const maxWakeBatch = 64

// wakeQueued sends the wake job with the wake jobs queued right after it,
// in one batch: on PostgreSQL one NOTIFY transaction, and its commit, for
// all of them, which under load is most of what a wake-up costs. A push
// job ends the batch; it is returned, for the caller to deliver after the
// batch, so that no wake-up waits behind a push (an FCM send may take
// PushTimeout). taken counts the jobs taken off the queue.
func (s *Server) wakeQueued(job pushJob) (taken int, after *pushJob) {
	signals := []push.Signal{wakeSignal(job)}
	for len(signals) < maxWakeBatch {
		var next pushJob
		select {
		case next = <-s.pushQueue:
		default:
		}
		if next.requestID == "" {
			break // the queue is empty (or closed)
		}
		if next.wake == "" {
			after = &next
			break
		}
		signals = append(signals, wakeSignal(next))
	}
	ctx, cancel := context.WithTimeout(s.pushCtx, s.cfg.PushTimeout)
	defer cancel()
	if err := s.waker.NotifyAll(ctx, signals); err != nil && s.pushCtx.Err() == nil {
		s.log.Warn("waking waiting parties failed", "error", err.Error())
	}
	taken = len(signals)
	if after != nil {
		taken++
	}
	return taken, after
}

func wakeSignal(j pushJob) push.Signal {
	return push.Signal{Target: push.Target{DeviceID: j.wake, Kind: push.KindLocal}, RequestID: j.requestID}
}
