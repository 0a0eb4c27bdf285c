package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultPGChannel is the LISTEN/NOTIFY channel all replicas share.
const DefaultPGChannel = "keyholder_push"

// PGOptions configures a PGBroadcaster. The zero value is usable.
type PGOptions struct {
	// Channel is the NOTIFY channel: lowercase letters, digits and '_', at
	// most 63 bytes. Default DefaultPGChannel. Every replica must use the same.
	Channel string
	// MinBackoff and MaxBackoff bound the reconnect delay of the LISTEN
	// connection (defaults 100 ms and 10 s); it doubles per failure, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how long the LISTEN connection may sit idle before it
	// is pinged, so a silently dead connection is noticed. Default 30 s.
	PingInterval time.Duration
	// NotifyTimeout bounds one Notify (pool acquire + NOTIFY, tried again
	// while it fails). Default 2 s.
	NotifyTimeout time.Duration
	// Logger gets connection-state messages (never payloads). Default slog.Default().
	Logger *slog.Logger
	// Metrics, if set, counts LISTEN reconnects.
	Metrics *Metrics
	// Watch, if set, hears of WatchChannel on the same LISTEN connection:
	// Listening each time the connection starts LISTENing, Heard for every
	// notification there, Lost as soon as it breaks (notifications may be
	// missed until Listening again). The store's token cache watches
	// store.AuthChannel this way.
	Watch Watcher
	// WatchChannel is the channel Watch hears of, different from Channel.
	WatchChannel string
}

// Watcher hears a channel's notifications, and whether they reach this
// replica.
type Watcher interface {
	Listening()
	Heard(payload string)
	Lost()
}

// PGBroadcaster fans local events out across keyholderd replicas sharing a
// PostgreSQL database. Notify sends pg_notify(channel, "<requestID> <deviceID>"),
// Disconnect pg_notify(channel, "- <deviceID>");
// a dedicated connection on every replica LISTENs on the channel and
// publishes what it receives into that replica's Local hub, its own
// notifications included. So a device's SSE connection gets the event
// whichever replica it is connected to and whichever replica created the
// request. The NOTIFY payload holds the device id for routing; it stays
// inside the database server and is never sent to a push provider.
//
// Notifications sent while a replica's LISTEN connection is down are lost
// for that replica. When the connection comes back, the broadcaster
// disconnects every subscriber of the hub, so all devices reconnect and get
// the replay of their open requests from the database.
type PGBroadcaster struct {
	hub     *Local
	channel string
	opts    PGOptions
	connCfg *pgx.ConnConfig
	pool    *pgxpool.Pool

	cancel    context.CancelFunc
	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once

	listenerPID atomic.Uint32 // backend pid of the LISTEN connection, 0 while down (for tests)
}

// NewPGBroadcaster connects to the database at dsn, starts LISTENing and
// returns once the LISTEN is active, so no notification sent after it
// returns is missed. ctx bounds only this first connection; the broadcaster
// then runs until Close. Events received are published into hub.
func NewPGBroadcaster(ctx context.Context, dsn string, hub *Local, opts PGOptions) (*PGBroadcaster, error) {
	if hub == nil {
		return nil, errors.New("push: NewPGBroadcaster needs a Local hub")
	}
	if opts.Channel == "" {
		opts.Channel = DefaultPGChannel
	}
	if !validChannel(opts.Channel) {
		return nil, errors.New("push: PostgreSQL channel must be 1-63 characters of [a-z0-9_]")
	}
	if opts.Watch != nil && (!validChannel(opts.WatchChannel) || opts.WatchChannel == opts.Channel) {
		return nil, errors.New("push: PostgreSQL watch channel must be 1-63 characters of [a-z0-9_], other than the channel")
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(10*time.Second, opts.MinBackoff)
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.NotifyTimeout <= 0 {
		opts.NotifyTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	// pgx redacts passwords in its parse and connect errors.
	connCfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("push: postgres config: %w", err)
	}
	if _, ok := connCfg.RuntimeParams["application_name"]; !ok {
		connCfg.RuntimeParams["application_name"] = "keyholderd-push-listener"
	}
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("push: postgres config: %w", err)
	}
	// NOTIFY is tiny and fast; a few connections are plenty and keep the
	// broadcaster from competing with the store for connection slots.
	poolCfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("push: postgres pool: %w", err)
	}

	b := &PGBroadcaster{
		hub:     hub,
		channel: opts.Channel,
		opts:    opts,
		connCfg: connCfg,
		pool:    pool,
		done:    make(chan struct{}),
	}
	conn, err := b.connect(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("push: postgres LISTEN: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go b.run(runCtx, conn)
	return b, nil
}

func validChannel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Notify broadcasts requestID for t.DeviceID to every replica's hub,
// including this one. It returns once PostgreSQL accepted the NOTIFY;
// delivery to subscribers follows asynchronously (milliseconds).
//
// A NOTIFY that fails is tried again (see notify). If it still fails,
// the event is published into this replica's own hub before the error is
// returned, so a device connected here hears of the request at once; one
// connected to another replica finds it when its stream re-checks the open
// requests at its next heartbeat.
func (b *PGBroadcaster) Notify(ctx context.Context, t Target, requestID string) error {
	return b.NotifyAll(ctx, []Signal{{Target: t, RequestID: requestID}})
}

// NotifyAll is Notify for every signal, in one statement (one NOTIFY
// transaction). Every signal is checked first; nothing is sent if one is
// invalid. A failure is handled as Notify's: each signal then goes to this
// replica's own hub.
func (b *PGBroadcaster) NotifyAll(ctx context.Context, signals []Signal) error {
	if len(signals) == 0 {
		return nil
	}
	var q strings.Builder
	args := []any{b.channel}
	q.WriteString("SELECT ")
	for i, sg := range signals {
		if !ValidRequestID(sg.RequestID) {
			return ErrBadRequestID
		}
		if !validDeviceID(sg.Target.DeviceID) {
			return ErrBadTarget
		}
		if i > 0 {
			q.WriteString(", ")
		}
		// The request id comes first: it cannot contain a space, so the
		// device id may be any string.
		args = append(args, sg.RequestID+" "+sg.Target.DeviceID)
		fmt.Fprintf(&q, "pg_notify($1, $%d)", len(args))
	}
	err := b.exec(ctx, q.String(), args...)
	if err != nil && !errors.Is(err, ErrClosed) {
		for _, sg := range signals {
			b.hub.publish(sg.Target.DeviceID, sg.RequestID)
		}
	}
	return err
}

// disconnectMark, in the place of a request id, makes a notification end
// the device's streams. It is not a valid request id, so a replica that
// does not know it ignores the notification as malformed.
const disconnectMark = "-"

// Disconnect ends deviceID's live event streams on every replica's hub,
// this one's included. It returns once PostgreSQL accepted the NOTIFY.
func (b *PGBroadcaster) Disconnect(ctx context.Context, deviceID string) error {
	if !validDeviceID(deviceID) {
		return ErrBadTarget
	}
	return b.notify(ctx, disconnectMark+" "+deviceID)
}

// notifyRetryMax bounds the wait between two NOTIFY attempts.
const notifyRetryMax = 200 * time.Millisecond

// notify sends payload on the channel, trying again with a short back-off
// until it succeeds or NotifyTimeout passes: a pooled connection that was
// cut (a PostgreSQL restart, a proxy, pg_terminate_backend) fails its next
// statement once and is then replaced by the pool, so one failure says
// little. A notification that PostgreSQL received although the answer was
// lost may arrive twice; events are idempotent.
func (b *PGBroadcaster) notify(ctx context.Context, payload string) error {
	return b.exec(ctx, "SELECT pg_notify($1, $2)", b.channel, payload)
}

// exec runs a NOTIFY statement, tried again as notify says.
func (b *PGBroadcaster) exec(ctx context.Context, sql string, args ...any) error {
	if b.closed.Load() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.NotifyTimeout)
	defer cancel()
	wait := 10 * time.Millisecond
	for {
		_, err := b.pool.Exec(ctx, sql, args...)
		if err == nil {
			return nil
		}
		if b.closed.Load() {
			return ErrClosed
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("push: postgres NOTIFY: %w", err)
		case <-t.C:
		}
		wait = min(wait*2, notifyRetryMax)
	}
}

// Close stops listening and closes the connections. It does not close the
// hub. It is safe to call more than once.
func (b *PGBroadcaster) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.cancel()
		<-b.done
		b.pool.Close()
	})
	return nil
}

// connect opens the LISTEN connection.
func (b *PGBroadcaster) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second) // a black-holed host must not hang us
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, b.connCfg)
	if err != nil {
		return nil, err
	}
	listen := "LISTEN " + pgx.Identifier{b.channel}.Sanitize()
	if b.opts.Watch != nil {
		listen += "; LISTEN " + pgx.Identifier{b.opts.WatchChannel}.Sanitize()
	}
	if _, err := conn.Exec(ctx, listen); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	b.listenerPID.Store(conn.PgConn().PID())
	if b.opts.Watch != nil {
		b.opts.Watch.Listening() // heard from now on
	}
	return conn, nil
}

// run owns the LISTEN connection: it reads notifications and reconnects
// with back-off when the connection breaks, until ctx is canceled.
func (b *PGBroadcaster) run(ctx context.Context, conn *pgx.Conn) {
	defer close(b.done)
	log := b.opts.Logger
	backoff := b.opts.MinBackoff
	for {
		if conn != nil {
			since := time.Now()
			err := b.listen(ctx, conn)
			b.listenerPID.Store(0)
			if b.opts.Watch != nil {
				b.opts.Watch.Lost()
			}
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
			conn = nil
			if ctx.Err() != nil {
				return
			}
			log.Warn("push: PostgreSQL LISTEN connection lost, reconnecting", "err", err)
			// A connection that lived long was healthy: start over from the
			// short delay. One that died at once keeps backing off.
			if time.Since(since) > b.opts.MaxBackoff {
				backoff = b.opts.MinBackoff
			}
		}

		// Jitter spreads the reconnects of many replicas after a database restart.
		delay := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, b.opts.MaxBackoff)

		c, err := b.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("push: PostgreSQL LISTEN reconnect failed", "err", err, "retry_in", backoff)
			continue
		}
		conn = c
		b.opts.Metrics.reconnect()
		log.Info("push: PostgreSQL LISTEN connection re-established")
		// Events sent while we were deaf are gone for this replica: make
		// every device reconnect and replay its open requests.
		b.hub.disconnectAll()
	}
}

// listen reads notifications until the connection fails or ctx ends.
func (b *PGBroadcaster) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, b.opts.PingInterval)
		n, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		if err == nil {
			if b.opts.Watch != nil && n.Channel == b.opts.WatchChannel {
				b.opts.Watch.Heard(n.Payload)
			} else {
				b.deliver(n.Payload)
			}
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !idle || conn.IsClosed() {
			return err
		}
		// Idle for PingInterval: pgx keeps the connection after a read
		// deadline, so check it is still alive and go on waiting.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// deliver parses "<requestID> <deviceID>" and publishes it locally, or
// "- <deviceID>" and ends the device's streams. Malformed payloads (another
// program on the channel) are ignored.
func (b *PGBroadcaster) deliver(payload string) {
	reqID, devID, ok := strings.Cut(payload, " ")
	if ok && reqID == disconnectMark && validDeviceID(devID) {
		b.hub.Disconnect(context.Background(), devID)
		return
	}
	if !ok || !ValidRequestID(reqID) || !validDeviceID(devID) {
		b.opts.Logger.Warn("push: ignoring malformed notification", "channel", b.channel, "len", len(payload))
		return
	}
	b.hub.publish(devID, reqID)
}
