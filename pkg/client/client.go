// Package client is the Go SDK of Keyholder's HTTP API: the operator
// routes (admin token), the device routes and the party routes (bearer
// tokens obtained by signing a challenge with the caller's OpenPGP key and
// refreshed transparently), streaming upload (seal and upload in one
// stream) and download, and the device's server-sent event stream with
// reconnect.
//
// The wire types are those of pkg/api; errors from the server are returned
// as *Error, built from the RFC 9457 problem body.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
	"github.com/keyholder/keyholder/pkg/transparency"
)

// Error is an error response of the server: the RFC 9457 problem it sent,
// or, if it sent none, its status (with a short plain-text body as the
// detail). It is api.Problem, the type the server sends.
type Error = api.Problem

// StatusOf returns the HTTP status of a server error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// IsTransient reports whether err may go away if the same call is made
// again later: the server could not be reached or the connection broke (a
// network error), or it answered 5xx (a restarting server, a database
// outage, a proxy) or 429. Everything else, a 4xx answer or an error made
// locally (a key that cannot sign, a record that cannot be rewrapped), will
// fail the same way every time and must not be retried.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if s := StatusOf(err); s != 0 {
		return s >= 500 || s == http.StatusTooManyRequests
	}
	var cert *tls.CertificateVerificationError
	if errors.As(err, &cert) {
		return false // a configuration problem, not a passing one
	}
	// Not net.Error: a syscall.Errno satisfies it too, a local EIO included.
	var ue *url.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// ExplainUnreachable adds to a connection-refused error the question an
// operator or party should ask first.
func ExplainUnreachable(err error, server string) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (is keyholderd running at %s?)", err, server)
	}
	return err
}

// IsNotFound, IsConflict report the server's 404 and 409.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }
func IsConflict(err error) bool { return StatusOf(err) == http.StatusConflict }

// Client calls one Keyholder server. It is safe for concurrent use.
type Client struct {
	base        *url.URL
	hc          *http.Client
	id          *Identity
	adminToken  string
	userAgent   string
	pins        PinStore
	sessionKeys SessionKeyIndex
	chains      *keychain.Cache // the chains this client verified

	pollMin, pollMax time.Duration

	// The transparency log (WithLog); logMu keeps one proof fetched and
	// trusted at a time, so that an honest but stale answer is not
	// taken for a rollback.
	logV       *transparency.Verifier
	trust      *transparency.Trust
	logTimeout time.Duration
	logMaxAge  time.Duration
	histories  HistoryStore
	logMu      sync.Mutex

	mu       sync.Mutex
	learned  map[string]bool // records LearnSessionKeys has read
	token    string
	expires  time.Time
	loginMu  sync.Mutex
	tokenGen int
}

// An Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one without a total
// timeout, since uploads, downloads and the event stream are long).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithIdentity authenticates as the device or party that owns id.
func WithIdentity(id *Identity) Option { return func(c *Client) { c.id = id } }

// WithAdminToken sets the operator token for the /v1/admin routes.
func WithAdminToken(tok string) Option { return func(c *Client) { c.adminToken = tok } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithPollInterval sets how WaitDecided and WaitGrant poll: the first
// wait is min, each next one 1.5 times longer, up to max (default 50ms
// and 1s).
func WithPollInterval(min, max time.Duration) Option {
	return func(c *Client) {
		if min > 0 {
			c.pollMin = min
		}
		if max >= c.pollMin {
			c.pollMax = max
		}
	}
}

// New returns a client of the server at baseURL (scheme, host and an
// optional path prefix).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q (want http(s)://host[:port])", baseURL)
	}
	c := &Client{base: u, hc: &http.Client{Transport: defaultTransport()}, userAgent: "keyholder-go-client/1",
		pollMin: 50 * time.Millisecond, pollMax: time.Second, logTimeout: DefaultLogTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.histories == nil {
		c.histories = &MemoryHistories{}
	}
	if c.sessionKeys == nil {
		c.sessionKeys = &MemorySessionKeys{}
	}
	c.chains = keychain.NewCache(1024)
	return c, nil
}

func defaultTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 32
	t.ResponseHeaderTimeout = 0
	return t
}

// Identity returns the client's identity (nil for an operator client).
func (c *Client) Identity() *Identity { return c.id }

// BaseURL returns the server URL.
func (c *Client) BaseURL() string { return c.base.String() }

func (c *Client) url(path string) string { return c.base.String() + path }

type authKind int

const (
	authNone authKind = iota
	authAdmin
	authKey
)

// Login obtains a fresh bearer token by signing a challenge. Calls made
// through the client log in by themselves when needed.
func (c *Client) Login(ctx context.Context) error {
	c.mu.Lock()
	gen := c.tokenGen
	c.mu.Unlock()
	_, err := c.login(ctx, gen)
	return err
}

// login logs in unless another goroutine did since generation gen.
func (c *Client) login(ctx context.Context, gen int) (string, error) {
	if c.id == nil {
		return "", errors.New("client: no identity: this route needs a device or party key")
	}
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	if c.tokenGen != gen && c.token != "" && time.Until(c.expires) > time.Minute {
		tok := c.token
		c.mu.Unlock()
		return tok, nil
	}
	c.mu.Unlock()
	fpr := c.id.Fingerprint()
	var ch api.ChallengeResponse
	if err := c.doJSON(ctx, http.MethodPost, api.PathAuthChallenge, authNone, api.ChallengeRequest{Fingerprint: fpr}, &ch); err != nil {
		return "", err
	}
	text, err := (&statement.Challenge{Nonce: ch.Nonce, Fingerprint: fpr}).Marshal()
	if err != nil {
		return "", fmt.Errorf("signing challenge: %w", err)
	}
	sig, err := c.id.SignChallenge(text)
	if err != nil {
		return "", err
	}
	var tr api.TokenResponse
	if err := c.doJSON(ctx, http.MethodPost, api.PathAuthToken, authNone,
		api.TokenRequest{Fingerprint: fpr, Nonce: ch.Nonce, Signature: string(sig)}, &tr); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.token, c.expires = tr.Token, tr.Expires
	c.tokenGen++
	c.mu.Unlock()
	return tr.Token, nil
}

// bearer returns a token valid for at least a minute, logging in if needed.
func (c *Client) bearer(ctx context.Context) (string, int, error) {
	c.mu.Lock()
	tok, exp, gen := c.token, c.expires, c.tokenGen
	c.mu.Unlock()
	if tok != "" && time.Until(exp) > time.Minute {
		return tok, gen, nil
	}
	tok, err := c.login(ctx, gen)
	c.mu.Lock()
	gen = c.tokenGen
	c.mu.Unlock()
	return tok, gen, err
}

// send performs one request. body is replayed on a 401 (the token is
// renewed once), so it must be nil or a *bytes.Reader.
func (c *Client) send(ctx context.Context, method, path string, auth authKind, body []byte, contentType string, hdr http.Header) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.url(path), r)
		if err != nil {
			return nil, err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		gen, err := c.authorize(ctx, req, auth)
		if err != nil {
			return nil, err
		}
		resp, err := c.do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusUnauthorized && auth == authKey && attempt == 0 {
			drain(resp)
			c.invalidate(gen)
			continue
		}
		return resp, nil
	}
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, ExplainUnreachable(fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err), c.base.String())
	}
	return resp, nil
}

// authorize sets the Authorization header and returns the token generation.
func (c *Client) authorize(ctx context.Context, req *http.Request, auth authKind) (int, error) {
	switch auth {
	case authAdmin:
		if c.adminToken == "" {
			return 0, errors.New("client: no admin token")
		}
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	case authKey:
		tok, gen, err := c.bearer(ctx)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return gen, nil
	}
	return 0, nil
}

// invalidate forgets the token of generation gen after a 401.
func (c *Client) invalidate(gen int) {
	c.mu.Lock()
	if c.tokenGen == gen {
		c.token = ""
	}
	c.mu.Unlock()
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// doJSON sends in as JSON (nil: no body) and decodes a 2xx answer into out.
func (c *Client) doJSON(ctx context.Context, method, path string, auth authKind, in, out any) error {
	return c.doJSONHeader(ctx, method, path, auth, nil, in, out)
}

// doJSONHeader is doJSON with extra request headers.
func (c *Client) doJSONHeader(ctx context.Context, method, path string, auth authKind, hdr http.Header, in, out any) error {
	var body []byte
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = b, "application/json"
	}
	resp, err := c.send(ctx, method, path, auth, body, ct, hdr)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// responseError turns a non-2xx response into an *Error.
func responseError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == api.ContentTypeProblemJSON || mt == "application/json" {
		var p api.Problem
		if json.Unmarshal(b, &p) == nil {
			if p.Title != "" {
				e.Title = p.Title
			}
			e.Type, e.Detail = p.Type, p.Detail
			e.RecordID, e.RequestID = p.RecordID, p.RequestID
			return e
		}
	}
	if s := strings.TrimSpace(string(b)); s != "" && len(s) < 512 {
		e.Detail = s
	}
	return e
}

// Healthz checks that the server answers /healthz.
func (c *Client) Healthz(ctx context.Context) error {
	var h api.Health
	return c.doJSON(ctx, http.MethodGet, api.PathHealthz, authNone, nil, &h)
}
