package push_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keyholder/keyholder/internal/push"
)

// Example_sseHandler shows how the server's device event stream should use
// the hub. The order matters: subscribe first, then replay every open
// request from the database, then stream live events. A request created
// between the two steps then arrives twice (once replayed, once live),
// never zero times; the device ignores ids it has already seen.
func Example_sseHandler() {
	hub := push.NewLocal(push.LocalOptions{})
	// openRequests stands for the store query: ids of the device's open requests.
	openRequests := func(ctx context.Context, deviceID string) ([]string, error) { return nil, nil }

	handler := func(w http.ResponseWriter, r *http.Request) {
		deviceID := "from the authenticated device token"

		events, cancel := hub.Subscribe(deviceID) // 1. subscribe
		defer cancel()

		ids, err := openRequests(r.Context(), deviceID) // 2. replay (Last-Event-ID is not a cursor: always replay)
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		push.SetSSEHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		for _, id := range ids {
			if push.WriteSSE(w, push.Event{RequestID: id}) != nil {
				return
			}
		}

		heartbeat := time.NewTicker(20 * time.Second) // 3. live events
		defer heartbeat.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case ev, ok := <-events:
				if !ok {
					return // overflow, resync or shutdown: the device reconnects and replays
				}
				if push.WriteSSE(w, ev) != nil {
					return
				}
			case <-heartbeat.C:
				if push.WriteSSEHeartbeat(w) != nil {
					return
				}
			}
		}
	}

	srv := &http.Server{Handler: http.HandlerFunc(handler), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(hub.Close) // end the streams so Shutdown can finish
	_ = srv
}

// Example_wiring shows how keyholderd builds its single Notifier.
func Example_wiring() {
	ctx := context.Background()
	cfg := struct{ DB, Push string }{DB: "data/keyholder.db", Push: "local"} // --db, --push

	metrics := push.NewMetrics() // registry.MustRegister(metrics) on the server's registry
	hub := push.NewLocal(push.LocalOptions{Metrics: metrics})

	var local push.Notifier = hub
	if strings.HasPrefix(cfg.DB, "postgres://") {
		b, err := push.NewPGBroadcaster(ctx, cfg.DB, hub, push.PGOptions{Metrics: metrics})
		if err != nil {
			panic(err)
		}
		defer b.Close()
		local = b // Notify goes through NOTIFY, so every replica's hub gets it
	}

	var fcm push.Notifier // stays nil with --push local
	if cfg.Push == "fcm" {
		f, err := push.NewFCM(ctx, push.FCMOptions{ProjectID: "my-project", CredentialsFile: "/etc/keyholder/fcm.json"})
		if err != nil {
			panic(err)
		}
		fcm = f
	}
	notifier := push.NewMulti(local, fcm, metrics)

	// After the transaction that created the request has committed. The id
	// is the request's own random id (push.NewRequestID() when the row is made).
	requestID := push.NewRequestID()
	target := push.Target{DeviceID: "device id", Kind: push.KindFCM, Token: "registration token"}
	if err := notifier.Notify(ctx, target, requestID); err != nil {
		slog.Warn("push failed", "err", err) // never log the token
		if errors.Is(err, push.ErrTargetGone) {
			// mark the device's FCM target dead; it keeps the local channel
		}
	}
}
