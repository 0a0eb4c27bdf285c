package push

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWriteSSE(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		ev      Event
		want    string
		wantErr error
	}{
		{"live event", Event{ID: 42, RequestID: id}, "id: 42\ndata: {\"request\":\"" + id + "\"}\n\n", nil},
		{"replayed event has no id", Event{RequestID: id}, "data: {\"request\":\"" + id + "\"}\n\n", nil},
		{"non-opaque id refused", Event{ID: 1, RequestID: "x\ndata: injected"}, "", ErrBadRequestID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteSSE(&buf, tc.ev)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("WriteSSE = %v, want %v", err, tc.wantErr)
			}
			if got := buf.String(); got != tc.want {
				t.Fatalf("wrote %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWriteSSEFlushes(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := WriteSSE(rec, Event{ID: 1, RequestID: NewRequestID()}); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed {
		t.Fatal("WriteSSE did not flush")
	}
	rec = httptest.NewRecorder()
	if err := WriteSSEHeartbeat(rec); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != ": ping\n\n" || !rec.Flushed {
		t.Fatalf("heartbeat wrote %q flushed=%v", rec.Body.String(), rec.Flushed)
	}

	// A ResponseWriter that cannot flush would stall the stream: say so.
	if err := WriteSSE(noFlushWriter{httptest.NewRecorder()}, Event{RequestID: NewRequestID()}); err == nil {
		t.Fatal("WriteSSE on a non-flushing ResponseWriter succeeded")
	}
}

type noFlushWriter struct{ w http.ResponseWriter }

func (n noFlushWriter) Header() http.Header         { return n.w.Header() }
func (n noFlushWriter) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noFlushWriter) WriteHeader(code int)        { n.w.WriteHeader(code) }

// TestSSEStreamOverHTTP wires the hub and the helpers the way the server's
// handler should and checks that an event reaches a real HTTP client while
// the response is still open.
func TestSSEStreamOverHTTP(t *testing.T) {
	hub := NewLocal(LocalOptions{})
	subscribed := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		events, cancel := hub.Subscribe("dev")
		defer cancel()
		SetSSEHeaders(w.Header())
		w.WriteHeader(http.StatusOK)
		if err := WriteSSEHeartbeat(w); err != nil {
			return
		}
		close(subscribed)
		for {
			select {
			case <-r.Context().Done():
				return
			case ev, ok := <-events:
				if !ok {
					return
				}
				if WriteSSE(w, ev) != nil {
					return
				}
			}
		}
	}))
	defer srv.Close()
	defer hub.Close() // ends the handler before srv.Close waits for it

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	<-subscribed
	reqID := NewRequestID()
	if err := hub.Notify(ctx, Target{DeviceID: "dev"}, reqID); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if want := `data: {"request":"` + reqID + `"}`; line != want {
				t.Fatalf("got %q, want %q", line, want)
			}
			return
		}
	}
	t.Fatalf("stream ended without the event: %v", sc.Err())
}
