package push

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// fakeFCM is a local stand-in for the FCM HTTP v1 API. The registration
// token chooses the answer, as real FCM's answer depends on the token.
type fakeFCM struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

const (
	fakeProject     = "p"
	fakeAccessToken = "x"
)

func newFakeFCM(t *testing.T) *fakeFCM {
	t.Helper()
	f := &fakeFCM{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFCM) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/projects/"+fakeProject+"/messages:send" {
		f.t.Errorf("fake FCM: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+fakeAccessToken {
		f.t.Errorf("fake FCM: Authorization = %q", got)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("fake FCM: read body: %v", err)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()

	var req struct {
		Message struct {
			Token string `json:"token"`
		} `json:"message"`
	}
	_ = json.Unmarshal(body, &req)
	w.Header().Set("Content-Type", "application/json")
	switch req.Message.Token {
	case "tok-gone":
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`)
	case "tok-invalid":
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`)
	case "tok-internal":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html>\n<body>upstream exploded</body>\n</html>")
	case "tok-hang":
		<-r.Context().Done()
	default:
		io.WriteString(w, `{"name":"projects/p/messages/1"}`)
	}
}

func (f *fakeFCM) received() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.bodies...)
}

func newTestFCM(t *testing.T, f *fakeFCM, timeout time.Duration) *FCM {
	t.Helper()
	n, err := NewFCM(context.Background(), FCMOptions{
		ProjectID:   fakeProject,
		Endpoint:    f.srv.URL + "/v1",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fakeAccessToken}),
		Timeout:     timeout,
	})
	if err != nil {
		t.Fatalf("NewFCM: %v", err)
	}
	return n
}

// wantFCMBody is the complete message FCM may receive: the token, the
// request id and the wake-up flags. Anything more fails the test.
func wantFCMBody(token, requestID string) map[string]any {
	return map[string]any{
		"message": map[string]any{
			"token": token,
			"data":  map[string]any{"request": requestID},
			"android": map[string]any{
				"priority": "high",
			},
			"apns": map[string]any{
				"headers": map[string]any{
					"apns-push-type": "background",
					"apns-priority":  "5",
				},
				"payload": map[string]any{
					"aps": map[string]any{"content-available": float64(1)},
				},
			},
		},
	}
}

func TestFCMNotify(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		wantErr  error // sentinel expected via errors.Is; nil with wantFail=false means success
		wantFail bool
	}{
		{name: "accepted", token: "tok-ok-123"},
		{name: "unregistered token", token: "tok-gone", wantErr: ErrTargetGone, wantFail: true},
		{name: "invalid token is an error, not gone", token: "tok-invalid", wantFail: true},
		{name: "server error", token: "tok-internal", wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFakeFCM(t)
			n := newTestFCM(t, fake, 5*time.Second)
			reqID := NewRequestID()
			target := Target{DeviceID: "device-7f3a", Kind: KindFCM, Token: tc.token}

			err := n.Notify(context.Background(), target, reqID)
			switch {
			case !tc.wantFail && err != nil:
				t.Fatalf("Notify: %v", err)
			case tc.wantFail && err == nil:
				t.Fatal("Notify succeeded, want error")
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Notify error = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && errors.Is(err, ErrTargetGone):
				t.Fatalf("Notify error = %v must not mean the target is gone", err)
			}
			if err != nil {
				if strings.Contains(err.Error(), tc.token) {
					t.Errorf("error %q leaks the registration token", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q spans several lines", err)
				}
			}

			bodies := fake.received()
			if len(bodies) != 1 {
				t.Fatalf("fake FCM got %d requests, want 1 (no retries on these answers)", len(bodies))
			}
			var got map[string]any
			if err := json.Unmarshal(bodies[0], &got); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if want := wantFCMBody(tc.token, reqID); !reflect.DeepEqual(got, want) {
				t.Errorf("FCM body =\n%s\nwant exactly token + request id + wake flags:\n%v", bodies[0], want)
			}
			if strings.Contains(string(bodies[0]), target.DeviceID) {
				t.Errorf("FCM body carries the device id: %s", bodies[0])
			}
		})
	}
}

func TestFCMRefusesBeforeSending(t *testing.T) {
	tests := []struct {
		name    string
		target  Target
		reqID   string
		wantErr error
	}{
		{"empty request id", Target{Kind: KindFCM, Token: "tok"}, "", ErrBadRequestID},
		{"too short", Target{Kind: KindFCM, Token: "tok"}, "abc123", ErrBadRequestID},
		{"record path", Target{Kind: KindFCM, Token: "tok"}, "records/0123456789abcdef", ErrBadRequestID},
		{"free text", Target{Kind: KindFCM, Token: "tok"}, "Blood test results for Alice", ErrBadRequestID},
		{"no token", Target{Kind: KindFCM}, NewRequestID(), ErrBadTarget},
	}
	fake := newFakeFCM(t)
	n := newTestFCM(t, fake, 5*time.Second)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := n.Notify(context.Background(), tc.target, tc.reqID); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Notify = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if got := len(fake.received()); got != 0 {
		t.Fatalf("fake FCM got %d requests, want none", got)
	}
}

func TestFCMTimeoutBoundsNotify(t *testing.T) {
	fake := newFakeFCM(t)
	n := newTestFCM(t, fake, 200*time.Millisecond)
	start := time.Now()
	err := n.Notify(context.Background(), Target{Kind: KindFCM, Token: "tok-hang"}, NewRequestID())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Notify = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Notify took %v despite a 200ms timeout", d)
	}
}

func TestNewFCMNeedsProject(t *testing.T) {
	if _, err := NewFCM(context.Background(), FCMOptions{TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})}); err == nil {
		t.Fatal("NewFCM without project id succeeded")
	}
}
