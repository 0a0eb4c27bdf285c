package push

import (
	"context"
	"sync"
)

// Event is one live signal for a subscribed device.
type Event struct {
	// ID increases with every event the hub publishes, so it can be sent as
	// the SSE "id:" field. It is per hub (per replica, per process lifetime),
	// not a cursor into the database: never use a Last-Event-ID to skip the
	// replay of open requests.
	ID uint64
	// RequestID is the opaque request id, the only payload.
	RequestID string
}

// DefaultLocalBuffer is the per-subscriber buffer when LocalOptions.Buffer is 0.
const DefaultLocalBuffer = 32

// LocalOptions configures a Local hub.
type LocalOptions struct {
	// Buffer is how many undelivered events a subscriber may have queued
	// before it is disconnected. 0 means DefaultLocalBuffer.
	Buffer int
	// Metrics, if set, counts overflow disconnects.
	Metrics *Metrics
}

// Local is an in-process hub that fans events out to the SSE / long-poll
// connections of each device. It is safe for concurrent use.
//
// Notify never blocks on a subscriber. A subscriber whose buffer is full is
// disconnected (its channel is closed) instead of silently losing the event:
// the server's handler then ends the stream, the device reconnects, and the
// server replays every open request from the database, so nothing is lost.
type Local struct {
	buffer  int
	metrics *Metrics

	mu     sync.Mutex
	seq    uint64
	closed bool
	subs   map[string]map[*subscriber]struct{}
}

type subscriber struct {
	ch chan Event
}

// NewLocal returns an empty hub.
func NewLocal(opts LocalOptions) *Local {
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultLocalBuffer
	}
	return &Local{
		buffer:  opts.Buffer,
		metrics: opts.Metrics,
		subs:    make(map[string]map[*subscriber]struct{}),
	}
}

// Subscribe registers a listener for deviceID. Events arrive on the returned
// channel until cancel is called, the subscriber overflows, the hub resyncs
// (PostgreSQL listener reconnected) or the hub is closed; in every case the
// channel is closed, and the handler should end the connection so the device
// reconnects and gets a fresh replay. cancel is idempotent and must be called
// (defer it). An empty deviceID or a closed hub yields a closed channel.
//
// Subscribe before reading open requests from the database for the replay;
// otherwise a request created between the query and the subscription is missed.
func (h *Local) Subscribe(deviceID string) (events <-chan Event, cancel func()) {
	s := &subscriber{ch: make(chan Event, h.buffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || !validDeviceID(deviceID) {
		close(s.ch)
		return s.ch, func() {}
	}
	set := h.subs[deviceID]
	if set == nil {
		set = make(map[*subscriber]struct{})
		h.subs[deviceID] = set
	}
	set[s] = struct{}{}
	return s.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.removeLocked(deviceID, s)
	}
}

// removeLocked detaches s and closes its channel, once. Channels are only
// closed under h.mu, and sends happen only under h.mu, so no send can hit a
// closed channel.
func (h *Local) removeLocked(deviceID string, s *subscriber) {
	set := h.subs[deviceID]
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.subs, deviceID)
	}
	close(s.ch)
}

// Notify publishes requestID to the subscribers of t.DeviceID on this hub
// only. Having no subscriber is not an error: the device is offline and will
// see the request on its next connect (or via FCM).
func (h *Local) Notify(ctx context.Context, t Target, requestID string) error {
	return h.NotifyAll(ctx, []Signal{{Target: t, RequestID: requestID}})
}

// NotifyAll is Notify for every signal; nothing is published if one is
// invalid.
func (h *Local) NotifyAll(ctx context.Context, signals []Signal) error {
	for _, sg := range signals {
		if !ValidRequestID(sg.RequestID) {
			return ErrBadRequestID
		}
		if !validDeviceID(sg.Target.DeviceID) {
			return ErrBadTarget
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, sg := range signals {
		h.publish(sg.Target.DeviceID, sg.RequestID)
	}
	return nil
}

// publish delivers to deviceID's subscribers and reports how many got it.
func (h *Local) publish(deviceID, requestID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0
	}
	h.seq++
	ev := Event{ID: h.seq, RequestID: requestID}
	n := 0
	for s := range h.subs[deviceID] {
		select {
		case s.ch <- ev:
			n++
		default:
			// Full: the device is not reading. Cut it off so it resyncs
			// from the database rather than block everyone else.
			h.removeLocked(deviceID, s)
			h.metrics.overflow()
		}
	}
	return n
}

// Disconnect ends every subscription of deviceID on this hub (their
// channels close, so the handlers end the streams), e.g. when the device
// is revoked. It never fails.
func (h *Local) Disconnect(_ context.Context, deviceID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[deviceID] {
		h.removeLocked(deviceID, s)
	}
	return nil
}

// Subscribers returns how many live subscriptions deviceID has on this hub.
func (h *Local) Subscribers(deviceID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[deviceID])
}

// disconnectAll closes every subscription so all devices reconnect and
// replay from the database; used when live events may have been missed.
func (h *Local) disconnectAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, set := range h.subs {
		for s := range set {
			h.removeLocked(id, s)
		}
	}
}

// Close disconnects all subscribers and makes later Subscribe calls return a
// closed channel. Call it at shutdown, before or from http.Server's
// RegisterOnShutdown: SSE handlers never go idle on their own, so without it
// a graceful Shutdown waits for its deadline.
func (h *Local) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.disconnectAll()
}
