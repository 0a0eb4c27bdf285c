package push

import (
	"context"
	"errors"
	"fmt"
)

// Multi is the server's single Notifier. It always delivers on the local
// channel (a Local hub, or a PGBroadcaster across replicas), so a device
// with an open SSE connection gets the event live even when it also has an
// FCM token, and then, for KindFCM targets, sends through FCM.
type Multi struct {
	local   Notifier
	fcm     Notifier
	metrics *Metrics
}

// NewMulti combines the local channel (required) with an optional FCM
// notifier (nil when the server runs without FCM; FCM targets then get
// local delivery only and are counted as "skipped"). metrics may be nil.
func NewMulti(local, fcm Notifier, metrics *Metrics) *Multi {
	if local == nil {
		panic("push: NewMulti needs a local notifier")
	}
	return &Multi{local: local, fcm: fcm, metrics: metrics}
}

// Notify delivers locally, then through the target's provider. Errors of
// both are joined; errors.Is(err, ErrTargetGone) tells the caller to mark
// the device's FCM target dead. Sends are sequential and bounded by each
// notifier's timeout; call Notify after the request's transaction committed,
// and from a goroutine if the HTTP response must not wait for FCM.
func (m *Multi) Notify(ctx context.Context, t Target, requestID string) error {
	if !ValidRequestID(requestID) {
		return ErrBadRequestID
	}
	kind := t.Kind
	if kind == "" {
		kind = KindLocal
	}

	var errs []error
	err := m.local.Notify(ctx, t, requestID)
	m.metrics.send(KindLocal, resultOf(err))
	if err != nil {
		errs = append(errs, err)
	}

	switch kind {
	case KindLocal:
	case KindFCM:
		if m.fcm == nil {
			m.metrics.send(KindFCM, resultSkipped)
			break
		}
		err := m.fcm.Notify(ctx, t, requestID)
		m.metrics.send(KindFCM, resultOf(err))
		if err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fmt.Errorf("%w: unknown kind", ErrBadTarget))
	}
	return errors.Join(errs...)
}

// Disconnect ends the device's live streams through the local channel (on
// every replica when that is a PGBroadcaster). Push providers such as FCM
// hold no stream, so there is nothing to end there.
func (m *Multi) Disconnect(ctx context.Context, deviceID string) error {
	if d, ok := m.local.(Disconnecter); ok {
		return d.Disconnect(ctx, deviceID)
	}
	return nil
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrTargetGone):
		return resultGone
	default:
		return resultError
	}
}
