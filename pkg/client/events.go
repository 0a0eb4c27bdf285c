package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// An Event is one notification on the device's event stream: a request
// the device should fetch and answer.
type Event struct {
	// ID is the SSE event id ("" for events replayed on connect).
	ID string
	// RequestID is the request to fetch.
	RequestID string
}

// SubscribeOptions tune Subscribe.
type SubscribeOptions struct {
	// MinBackoff and MaxBackoff bound the wait between reconnects
	// (default 250ms and 15s; the wait doubles, with jitter).
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout drops a connection that has been silent this long (the
	// server sends a heartbeat every 20s; default 65s).
	IdleTimeout time.Duration
	// OnConnect is called each time the stream is (re)established.
	OnConnect func()
	// OnError is called when a connection fails or ends, with the wait
	// before the next attempt.
	OnError func(err error, retryIn time.Duration)
}

// Subscribe holds the device's event stream open, reconnecting with
// back-off after errors and server restarts, and sends each event on the
// returned channel, which is closed when ctx ends. On every (re)connect the
// server replays all open requests, so an event may arrive more than once:
// answering is idempotent on the server (a second answer gets 409).
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) <-chan Event {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 15 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 65 * time.Second
	}
	ch := make(chan Event, 64)
	go func() {
		defer close(ch)
		lastID := ""
		backoff := opts.MinBackoff
		for ctx.Err() == nil {
			connected, err := c.stream(ctx, &lastID, opts, ch)
			if ctx.Err() != nil {
				return
			}
			if connected {
				backoff = opts.MinBackoff
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			if opts.OnError != nil {
				opts.OnError(err, wait)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if backoff *= 2; backoff > opts.MaxBackoff {
				backoff = opts.MaxBackoff
			}
		}
	}()
	return ch
}

// stream runs one connection. It reports whether the stream was
// established, and why it ended.
func (c *Client) stream(ctx context.Context, lastID *string, opts SubscribeOptions, ch chan<- Event) (bool, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hdr := http.Header{"Accept": {"text/event-stream"}}
	if *lastID != "" {
		hdr.Set("Last-Event-ID", *lastID)
	}
	resp, err := c.send(cctx, http.MethodGet, api.PathDeviceEvents, authKey, nil, "", hdr)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, responseError(resp)
	}
	if opts.OnConnect != nil {
		opts.OnConnect()
	}
	idle := time.AfterFunc(opts.IdleTimeout, cancel)
	defer idle.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), 64<<10)
	var id, data string
	for sc.Scan() {
		idle.Reset(opts.IdleTimeout)
		line := sc.Text()
		switch {
		case line == "":
			if data != "" {
				var d struct {
					Request string `json:"request"`
				}
				if err := json.Unmarshal([]byte(data), &d); err == nil && api.IDPattern.MatchString(d.Request) {
					select {
					case ch <- Event{ID: id, RequestID: d.Request}:
					case <-ctx.Done():
						return true, ctx.Err()
					}
				}
				if id != "" {
					*lastID = id
				}
			}
			id, data = "", ""
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "data:"):
			if data != "" {
				data += "\n"
			}
			data += strings.TrimPrefix(line[5:], " ")
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() == nil && cctx.Err() != nil {
			return true, fmt.Errorf("event stream silent for %s", opts.IdleTimeout)
		}
		return true, err
	}
	return true, fmt.Errorf("event stream closed by the server")
}
