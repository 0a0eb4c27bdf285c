package client

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// poll calls fn with a growing interval (min up to max) until it reports
// done or fails, or ctx ends.
func poll(ctx context.Context, min, max time.Duration, fn func() (bool, error)) error {
	return waitLoop(ctx, min, max, 0, func(int) (bool, bool, error) {
		done, err := fn()
		return done, false, err
	})
}

// DefaultWait is how long a wait asks the server to hold each call
// (api.QueryWait) before it answers with the state unchanged.
const DefaultWait = 25 * time.Second

// waitLoop calls fn until it reports done or fails, or ctx ends. fn gets
// the seconds the server may hold the call (at most hold; 0 when ctx ends
// too soon to ask for one) and reports whether the server held it for
// about that long; then fn is called again at once, else after a growing
// interval (first up to most), so that a server that ignores the wait is
// polled as before.
func waitLoop(ctx context.Context, first, most, hold time.Duration, fn func(wait int) (done, held bool, err error)) error {
	d := first
	for {
		wait := int(hold / time.Second)
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, int(time.Until(dl)/time.Second)-1)
		}
		done, held, err := fn(max(wait, 0))
		if err != nil || done {
			return err
		}
		if held {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		if d = d * 3 / 2; d > most {
			d = most
		}
	}
}

// hold is how long a wait asks the server to hold a call: DefaultWait, or
// less when the HTTP client's own timeout would end the call first.
func (c *Client) hold() time.Duration {
	if t := c.hc.Timeout; t > 0 && t-time.Second < DefaultWait {
		return t - time.Second
	}
	return DefaultWait
}

// waitGet GETs path with the wait parameter into out, and reports whether
// the server held the call for at least half of the wait.
func (c *Client) waitGet(ctx context.Context, path string, wait int, out any) (bool, error) {
	if wait > 0 {
		path += "?" + api.QueryWait + "=" + strconv.Itoa(wait)
	}
	start := time.Now()
	err := c.doJSON(ctx, http.MethodGet, path, authKey, nil, out)
	return wait > 0 && time.Since(start) >= time.Duration(wait)*time.Second/2, err
}

// WaitDecided waits until a record is no longer pending and returns it
// (approved, rejected or expired): each call asks the server to answer
// when the device decides (api.QueryWait), and a server that does not
// wait is polled. Bound the wait with ctx.
func (c *Client) WaitDecided(ctx context.Context, recordID string) (*api.Record, error) {
	return waitState(ctx, c, api.Path(api.PathRecord, recordID), func(r *api.Record) bool { return r.State != api.RecordPending })
}

// waitState GETs path (waitGet) until final says the state it read is
// final, and returns the last state read.
func waitState[T any](ctx context.Context, c *Client, path string, final func(*T) bool) (*T, error) {
	var last *T
	err := waitLoop(ctx, c.pollMin, c.pollMax, c.hold(), func(wait int) (bool, bool, error) {
		var v T
		held, err := c.waitGet(ctx, path, wait, &v)
		if err != nil {
			return false, false, err
		}
		last = &v
		return final(&v), held, nil
	})
	return last, err
}

// WaitGrant polls until the caller holds a grant on the record, any grant:
// one from an older request counts. To wait for the answer to a request
// (granted, refused or expired), use WaitAccess. Bound the wait with ctx.
func (c *Client) WaitGrant(ctx context.Context, recordID string) (*api.Grant, error) {
	var g *api.Grant
	err := poll(ctx, c.pollMin, c.pollMax, func() (bool, error) {
		x, err := c.RecordGrant(ctx, recordID)
		if IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		g = x
		return true, nil
	})
	return g, err
}

// WaitAccess waits, like WaitDecided, until the device answered one of
// the caller's access requests or it expired, and returns its final
// state: answer "granted" (with the grant id) or "refused", or state
// "expired". It waits for this request's answer, whatever grants the
// caller already holds on the record. Bound the wait with ctx.
func (c *Client) WaitAccess(ctx context.Context, requestID string) (*api.AccessStatus, error) {
	return waitState(ctx, c, api.Path(api.PathPartyRequest, requestID), func(x *api.AccessStatus) bool { return x.State != api.RequestOpen })
}
