package push

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"firebase.google.com/go/v4/messaging"
	fcm "github.com/appleboy/go-fcm"
	"golang.org/x/oauth2"
)

// FCMOptions configures the Firebase Cloud Messaging notifier.
type FCMOptions struct {
	// ProjectID is the Firebase project id (required).
	ProjectID string
	// CredentialsFile or CredentialsJSON is a service-account key. With
	// neither and no TokenSource, Google Application Default Credentials
	// are used (GOOGLE_APPLICATION_CREDENTIALS, workload identity).
	CredentialsFile string
	CredentialsJSON []byte
	// TokenSource supplies OAuth2 access tokens directly; it takes the
	// place of credentials (tests, custom token brokers).
	TokenSource oauth2.TokenSource
	// Endpoint replaces the FCM API base URL (default
	// https://fcm.googleapis.com/v1), e.g. a local fake: "http://127.0.0.1:port/v1".
	Endpoint string
	// Timeout bounds one send, retries included. Default 10 s.
	Timeout time.Duration
}

// FCM sends data-only Firebase Cloud Messaging messages whose only data
// field is the request id.
type FCM struct {
	client  *fcm.Client
	timeout time.Duration
}

// NewFCM creates the FCM notifier. It does not contact Google.
func NewFCM(ctx context.Context, opts FCMOptions) (*FCM, error) {
	if opts.ProjectID == "" {
		return nil, errors.New("push: FCM project id is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	o := []fcm.Option{fcm.WithProjectID(opts.ProjectID)}
	switch {
	case opts.TokenSource != nil:
		o = append(o, fcm.WithTokenSource(opts.TokenSource))
	case len(opts.CredentialsJSON) > 0:
		o = append(o, fcm.WithCredentialsJSON(opts.CredentialsJSON))
	case opts.CredentialsFile != "":
		o = append(o, fcm.WithCredentialsFile(opts.CredentialsFile))
	}
	if opts.Endpoint != "" {
		o = append(o, fcm.WithEndpoint(opts.Endpoint))
	}
	c, err := fcm.NewClient(ctx, o...)
	if err != nil {
		return nil, fmt.Errorf("push: FCM client: %w", err)
	}
	return &FCM{client: c, timeout: opts.Timeout}, nil
}

// fcmMessage is the whole FCM message: the token to address it and one data
// field, the request id. No notification block (no title or body that the
// push provider or a lock screen could show), no collapse key, no
// analytics label. High priority on Android and content-available on iOS
// wake the app so it fetches the request over HTTPS. (APNs requires
// priority 5 for background pushes; 10 would be rejected.)
func fcmMessage(token, requestID string) *messaging.Message {
	return &messaging.Message{
		Token: token,
		Data:  map[string]string{"request": requestID},
		Android: &messaging.AndroidConfig{
			Priority: "high",
		},
		APNS: &messaging.APNSConfig{
			Headers: map[string]string{
				"apns-push-type": "background",
				"apns-priority":  "5",
			},
			Payload: &messaging.APNSPayload{
				Aps: &messaging.Aps{ContentAvailable: true},
			},
		},
	}
}

// Notify sends requestID to the device's FCM token t.Token. An
// unregistered token yields ErrTargetGone. Errors never include the token.
func (f *FCM) Notify(ctx context.Context, t Target, requestID string) error {
	if !ValidRequestID(requestID) {
		return ErrBadRequestID
	}
	if t.Token == "" {
		return fmt.Errorf("%w: FCM target without token", ErrBadTarget)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := f.client.Send(ctx, fcmMessage(t.Token, requestID))
	if err == nil && (resp == nil || len(resp.Responses) != 1) {
		err = errors.New("unexpected batch response")
	}
	if err != nil {
		return f.sendError(ctx, err)
	}
	r := resp.Responses[0]
	switch {
	case r.Success:
		return nil
	case messaging.IsUnregistered(r.Error):
		return ErrTargetGone
	default:
		return f.sendError(ctx, r.Error)
	}
}

func (f *FCM) sendError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		// Firebase flattens transport errors to strings; restore errors.Is.
		return fmt.Errorf("push: FCM send: %w", ctxErr)
	}
	if err == nil {
		err = errors.New("unknown error")
	}
	// Firebase may embed a raw (e.g. proxy HTML) response body in the
	// message; keep errors one short line for the logs. FCM does not echo
	// the registration token in its error texts.
	return fmt.Errorf("push: FCM send: %s", oneLine(err.Error(), 200))
}

func oneLine(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
