package push

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Notifier that records calls and returns a fixed error.
type recorder struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (r *recorder) Notify(_ context.Context, t Target, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, t.DeviceID+"/"+id)
	return r.err
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func TestMultiRoutes(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name         string
		kind         string
		noFCM        bool
		localErr     error
		fcmErr       error
		wantLocal    int
		wantFCM      int
		wantErrIs    []error
		wantMetrics  map[[2]string]float64 // {kind,result} -> count
		badRequestID bool
	}{
		{name: "local target", kind: KindLocal, wantLocal: 1,
			wantMetrics: map[[2]string]float64{{KindLocal, resultOK}: 1, {KindFCM, resultOK}: 0}},
		{name: "empty kind means local", kind: "", wantLocal: 1,
			wantMetrics: map[[2]string]float64{{KindLocal, resultOK}: 1}},
		{name: "fcm target also gets local", kind: KindFCM, wantLocal: 1, wantFCM: 1,
			wantMetrics: map[[2]string]float64{{KindLocal, resultOK}: 1, {KindFCM, resultOK}: 1}},
		{name: "fcm gone", kind: KindFCM, fcmErr: ErrTargetGone, wantLocal: 1, wantFCM: 1, wantErrIs: []error{ErrTargetGone},
			wantMetrics: map[[2]string]float64{{KindFCM, resultGone}: 1, {KindFCM, resultError}: 0}},
		{name: "fcm error", kind: KindFCM, fcmErr: boom, wantLocal: 1, wantFCM: 1, wantErrIs: []error{boom},
			wantMetrics: map[[2]string]float64{{KindFCM, resultError}: 1}},
		{name: "local failure does not stop fcm", kind: KindFCM, localErr: boom, wantLocal: 1, wantFCM: 1, wantErrIs: []error{boom},
			wantMetrics: map[[2]string]float64{{KindLocal, resultError}: 1, {KindFCM, resultOK}: 1}},
		{name: "fcm not configured", kind: KindFCM, noFCM: true, wantLocal: 1,
			wantMetrics: map[[2]string]float64{{KindLocal, resultOK}: 1, {KindFCM, resultSkipped}: 1}},
		{name: "unknown kind still delivers locally", kind: "apns", wantLocal: 1, wantErrIs: []error{ErrBadTarget}},
		{name: "bad request id sends nothing", kind: KindFCM, badRequestID: true, wantErrIs: []error{ErrBadRequestID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			local, fcm := &recorder{err: tc.localErr}, &recorder{err: tc.fcmErr}
			m := NewMetrics()
			var mu *Multi
			if tc.noFCM {
				mu = NewMulti(local, nil, m)
			} else {
				mu = NewMulti(local, fcm, m)
			}
			id := NewRequestID()
			if tc.badRequestID {
				id = "record 42"
			}
			err := mu.Notify(context.Background(), Target{DeviceID: "dev", Kind: tc.kind, Token: "tok"}, id)
			if len(tc.wantErrIs) == 0 && err != nil {
				t.Fatalf("Notify: %v", err)
			}
			for _, want := range tc.wantErrIs {
				if !errors.Is(err, want) {
					t.Fatalf("Notify = %v, want errors.Is %v", err, want)
				}
			}
			if local.n() != tc.wantLocal || fcm.n() != tc.wantFCM {
				t.Fatalf("calls local=%d fcm=%d, want %d %d", local.n(), fcm.n(), tc.wantLocal, tc.wantFCM)
			}
			for k, want := range tc.wantMetrics {
				if got := counterValue(t, m, "keyholder_push_total", map[string]string{"kind": k[0], "result": k[1]}); got != want {
					t.Errorf("keyholder_push_total{kind=%q,result=%q} = %v, want %v", k[0], k[1], got, want)
				}
			}
		})
	}
}

// TestPushPayloadsCarryOnlyTheRequestID is invariant 4 end to end: a
// device with both an SSE connection and an FCM token is notified through
// the server's Multi; every payload that leaves the package is captured and
// must hold the request id and nothing that identifies anyone.
func TestPushPayloadsCarryOnlyTheRequestID(t *testing.T) {
	fake := newFakeFCM(t)
	hub := NewLocal(LocalOptions{})
	mu := NewMulti(hub, newTestFCM(t, fake, 5*time.Second), nil)

	const deviceID = "device-of-alice-7f3a9c"
	const token = "fcm-registration-token-1"
	events, cancel := hub.Subscribe(deviceID)
	defer cancel()
	reqID := NewRequestID()
	if err := mu.Notify(context.Background(), Target{DeviceID: deviceID, Kind: KindFCM, Token: token}, reqID); err != nil {
		t.Fatal(err)
	}

	// SSE frame: data must be exactly {"request": id}.
	var frame strings.Builder
	if err := WriteSSE(&frame, recv(t, events)); err != nil {
		t.Fatal(err)
	}
	var sseData map[string]any
	for _, line := range strings.Split(frame.String(), "\n") {
		if s, ok := strings.CutPrefix(line, "data: "); ok {
			if err := json.Unmarshal([]byte(s), &sseData); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := map[string]any{"request": reqID}; !reflect.DeepEqual(sseData, want) {
		t.Errorf("SSE data = %v, want %v", sseData, want)
	}

	// FCM: data must be exactly {"request": id}; the token is only the address.
	bodies := fake.received()
	if len(bodies) != 1 {
		t.Fatalf("FCM got %d messages, want 1", len(bodies))
	}
	var msg struct {
		Message map[string]json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(bodies[0], &msg); err != nil {
		t.Fatal(err)
	}
	var data map[string]string
	_ = json.Unmarshal(msg.Message["data"], &data)
	if want := map[string]string{"request": reqID}; !reflect.DeepEqual(data, want) {
		t.Errorf("FCM data = %v, want %v", data, want)
	}
	if _, ok := msg.Message["notification"]; ok {
		t.Error("FCM message has a notification block")
	}
	for _, payload := range []string{frame.String(), string(bodies[0])} {
		if strings.Contains(payload, deviceID) || strings.Contains(payload, "alice") {
			t.Errorf("payload identifies the device or user: %s", payload)
		}
	}
}
