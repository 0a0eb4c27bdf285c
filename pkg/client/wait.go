package client

import (
	"context"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// poll calls fn with a growing interval (min up to max) until it reports
// done or fails, or ctx ends.
func poll(ctx context.Context, min, max time.Duration, fn func() (bool, error)) error {
	d := min
	for {
		done, err := fn()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		if d = d * 3 / 2; d > max {
			d = max
		}
	}
}

// WaitDecided polls a record until it is no longer pending and returns it
// (approved, rejected or expired). Bound the wait with ctx.
func (c *Client) WaitDecided(ctx context.Context, recordID string) (*api.Record, error) {
	var rec *api.Record
	err := poll(ctx, c.pollMin, c.pollMax, func() (bool, error) {
		r, err := c.Record(ctx, recordID)
		if err != nil {
			return false, err
		}
		rec = r
		return r.State != api.RecordPending, nil
	})
	return rec, err
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

// WaitAccess polls one of the caller's access requests until the device
// answered it or it expired, and returns its final state: answer
// "granted" (with the grant id) or "refused", or state "expired". It
// waits for this request's answer, whatever grants the caller already
// holds on the record. Bound the wait with ctx.
func (c *Client) WaitAccess(ctx context.Context, requestID string) (*api.AccessStatus, error) {
	var st *api.AccessStatus
	err := poll(ctx, c.pollMin, c.pollMax, func() (bool, error) {
		x, err := c.AccessRequestStatus(ctx, requestID)
		if err != nil {
			return false, err
		}
		st = x
		return x.State != api.RequestOpen, nil
	})
	return st, err
}
