// Package server is keyholderd's HTTP API (echo v4): authentication,
// operator routes, device enrollment and answers, party uploads, access
// requests and downloads. Every state change goes through store.Apply.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// Config holds the server's tunables. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	// AdminToken authorizes the operator routes. Empty disables them.
	AdminToken string
	// MaxRecordSize bounds an uploaded encrypted data packet.
	MaxRecordSize int64
	// InlineMax is the largest data packet kept in the database instead
	// of the blob store (0: DefaultInlineMax; negative: none; at most
	// MaxInlineMax). An upload holds at most this much of its record in
	// memory.
	InlineMax int64
	// PendingTTL is how long a record waits for its approval.
	PendingTTL time.Duration
	// RequestTTL is how long an access request stays open.
	RequestTTL time.Duration
	// MaxGrantTTL bounds a grant's lifetime.
	MaxGrantTTL time.Duration
	// TokenTTL, NonceTTL, CodeTTL, LinkTTL: bearer tokens, auth
	// challenges, enrollment codes, link requests (adding a device).
	TokenTTL time.Duration
	NonceTTL time.Duration
	CodeTTL  time.Duration
	LinkTTL  time.Duration
	// ClockSkew is how far a statement's time may be from the server's.
	ClockSkew time.Duration
	// Per-party rate limits (events per second and burst) on uploads and
	// access requests. A zero rate disables the limit.
	UploadRate  rate.Limit
	UploadBurst int
	AccessRate  rate.Limit
	AccessBurst int
	// Per-client-address rate limit (events per second and burst) shared
	// by the unauthenticated routes: login challenge, token, enrollment
	// (and its info), link requests.
	// A zero rate disables it.
	AuthRate   rate.Limit
	AuthBurst  int
	SweepEvery time.Duration
	// PushTimeout bounds the pushes of one request (all its devices).
	PushTimeout time.Duration
	// PushWorkers send pushes in the background; PushQueue is how many
	// may wait for them before further pushes are dropped.
	PushWorkers int
	PushQueue   int
	// SSEHeartbeat is the interval of the event stream's ": ping"
	// comments; each also re-checks that the device is still active and
	// sends the open requests the stream has not sent (a lost push).
	SSEHeartbeat time.Duration
	// MinFreeSpace is the free space (bytes) the blob store must have for
	// /readyz to say ready.
	MinFreeSpace int64
	Logger       *slog.Logger
	Registry     *prometheus.Registry
	PushMetrics  *push.Metrics
	DisableSweep bool

	// MaxUploadsPerParty bounds the uploads one party may have in flight
	// at once; one more is refused (429) before its body is read. Zero
	// means the default; a negative value, no limit.
	MaxUploadsPerParty int
	// MaxWaitsPerParty bounds the waiting GETs (api.QueryWait) one party
	// may have held at once; beyond it a GET answers at once, as without
	// wait. Zero means the default; a negative value, no limit.
	MaxWaitsPerParty int
	// BodyTimeout is how long a client may take to send a (JSON) request
	// body, from the end of its headers. UploadIdleTimeout is how long an
	// upload's body may send nothing while the server waits for it,
	// however long the upload is in all. Past either, the request fails
	// (408) and its connection is closed.
	BodyTimeout       time.Duration
	UploadIdleTimeout time.Duration

	// Profiles are the record profiles uploads may be sealed in (the data
	// packet version decides); a record of another profile is refused
	// (422 profile-not-accepted) before its body is stored. Empty means
	// both.
	Profiles []envelope.Profile
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxRecordSize: 4 << 30,
		PendingTTL:    7 * 24 * time.Hour,
		RequestTTL:    24 * time.Hour,
		MaxGrantTTL:   30 * 24 * time.Hour,
		TokenTTL:      15 * time.Minute,
		NonceTTL:      2 * time.Minute,
		CodeTTL:       24 * time.Hour,
		LinkTTL:       10 * time.Minute,
		ClockSkew:     10 * time.Minute,
		UploadRate:    rate.Limit(10),
		UploadBurst:   50,
		AccessRate:    rate.Limit(1),
		AccessBurst:   20,
		AuthRate:      rate.Limit(10),
		AuthBurst:     100,
		SweepEvery:    time.Minute,
		PushTimeout:   10 * time.Second,
		PushWorkers:   8,
		PushQueue:     4096,
		SSEHeartbeat:  20 * time.Second,

		MaxUploadsPerParty: 4,
		MaxWaitsPerParty:   64,
		BodyTimeout:        10 * time.Second,
		UploadIdleTimeout:  30 * time.Second,
		MinFreeSpace:       DefaultMinFreeSpace,
	}
}

// DefaultInlineMax is Config.InlineMax's default: a record of up to 64
// KiB (a statement, a lab result, a contract's text) costs one database
// commit, where a blob file costs a creation, an fsync, a rename and two
// directory fsyncs, about as much CPU again as the rest of its upload.
const DefaultInlineMax = 64 << 10

// MaxInlineMax bounds Config.InlineMax: an upload holds that much in
// memory, and a database row is no place for a large record.
const MaxInlineMax = 16 << 20

// DefaultMinFreeSpace is the free space /readyz wants by default: one
// upload's preallocation step (see docs/operations.md, Data directory).
const DefaultMinFreeSpace = 64 << 20

func (c *Config) fill() {
	d := DefaultConfig()
	if c.MaxRecordSize <= 0 {
		c.MaxRecordSize = d.MaxRecordSize
	}
	if c.InlineMax == 0 {
		c.InlineMax = DefaultInlineMax
	}
	c.InlineMax = min(c.InlineMax, MaxInlineMax)
	for _, p := range []struct{ v, d *time.Duration }{
		{&c.PendingTTL, &d.PendingTTL}, {&c.RequestTTL, &d.RequestTTL}, {&c.MaxGrantTTL, &d.MaxGrantTTL},
		{&c.TokenTTL, &d.TokenTTL}, {&c.NonceTTL, &d.NonceTTL}, {&c.CodeTTL, &d.CodeTTL}, {&c.LinkTTL, &d.LinkTTL},
		{&c.ClockSkew, &d.ClockSkew}, {&c.SweepEvery, &d.SweepEvery}, {&c.PushTimeout, &d.PushTimeout},
		{&c.SSEHeartbeat, &d.SSEHeartbeat}, {&c.BodyTimeout, &d.BodyTimeout}, {&c.UploadIdleTimeout, &d.UploadIdleTimeout},
	} {
		if *p.v <= 0 {
			*p.v = *p.d
		}
	}
	if c.MinFreeSpace <= 0 {
		c.MinFreeSpace = d.MinFreeSpace
	}
	if c.UploadBurst <= 0 {
		c.UploadBurst = d.UploadBurst
	}
	if c.AccessBurst <= 0 {
		c.AccessBurst = d.AccessBurst
	}
	if c.PushWorkers <= 0 {
		c.PushWorkers = d.PushWorkers
	}
	if c.PushQueue <= 0 {
		c.PushQueue = d.PushQueue
	}
	if c.AuthBurst <= 0 {
		c.AuthBurst = d.AuthBurst
	}
	if c.MaxUploadsPerParty == 0 {
		c.MaxUploadsPerParty = d.MaxUploadsPerParty
	}
	if c.MaxWaitsPerParty == 0 {
		c.MaxWaitsPerParty = d.MaxWaitsPerParty
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.Profiles) == 0 {
		c.Profiles = []envelope.Profile{envelope.Compat, envelope.Modern}
	}
}

// ParseProfiles reads a --profiles list ("compat", "modern" or both, in
// any order) into Config.Profiles.
func ParseProfiles(names []string) ([]envelope.Profile, error) {
	if len(names) == 0 {
		return nil, errors.New("no record profile given (want compat, modern or both)")
	}
	var out []envelope.Profile
	for _, n := range names {
		p, err := envelope.ParseProfile(strings.TrimSpace(n))
		if err != nil {
			return nil, fmt.Errorf("record profiles: %w", err)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// profilePackets names what each profile's data packet is, for errors.
var profilePackets = map[envelope.Profile]string{
	envelope.Compat: "SEIPDv1 data packet, v3 key packets",
	envelope.Modern: "SEIPDv2 data packet, v6 key packets",
}

// profileAccepted refuses a message sealed in a profile this deployment
// does not take.
func (s *Server) profileAccepted(part string, p envelope.Profile) error {
	if slices.Contains(s.cfg.Profiles, p) {
		return nil
	}
	names := make([]string, len(s.cfg.Profiles))
	for i, q := range s.cfg.Profiles {
		names[i] = string(q)
	}
	return unprocessable(api.ProblemProfileNotAccepted, "Record profile not accepted",
		fmt.Sprintf("the %s is sealed in the %s profile (%s); this server accepts only: %s", part, p, profilePackets[p], strings.Join(names, ", ")))
}

// Server is the HTTP API.
type Server struct {
	cfg      Config
	st       *store.Store
	blobs    blob.Store
	notifier push.Notifier
	hub      *push.Local
	waker    push.BatchNotifier // wakes waiting parties: hub, or what fans out to every replica's
	e        *echo.Echo
	log      *slog.Logger
	metrics  *metrics
	adminSum [32]byte

	uploadLimiters *limiterSet // per party
	accessLimiters *limiterSet // per party
	authLimiters   *limiterSet // per client address
	uploadSlots    *slotSet    // uploads in flight, per party
	waitSlots      *slotSet    // waiting GETs held, per party

	pushCtx     context.Context
	pushCancel  context.CancelFunc
	pushQueue   chan pushJob
	pushWG      sync.WaitGroup // workers
	pushMu      sync.Mutex
	pushIdle    sync.Cond // signaled when pushPending drops to 0
	pushPending int
	pushClosed  bool
}

// New builds the server. notifier receives pushes after each committed
// request (nil: none), sent in the background; hub serves the device event
// stream and the parties' waits (nil: the stream only replays open
// requests and then idles, and a wait is not waited). A party's wait is
// woken through the hub of this process only, unless WakeThrough names
// what reaches every replica's. Call Shutdown when done.
func New(cfg Config, st *store.Store, blobs blob.Store, notifier push.Notifier, hub *push.Local, opts ...Option) *Server {
	cfg.fill()
	s := &Server{
		cfg: cfg, st: st, blobs: blobs, notifier: notifier, hub: hub, log: cfg.Logger,
		uploadLimiters: newLimiterSet(cfg.UploadRate, cfg.UploadBurst),
		accessLimiters: newLimiterSet(cfg.AccessRate, cfg.AccessBurst),
		authLimiters:   newLimiterSet(cfg.AuthRate, cfg.AuthBurst),
		uploadSlots:    newSlotSet(cfg.MaxUploadsPerParty),
		waitSlots:      newSlotSet(cfg.MaxWaitsPerParty),
	}
	if cfg.AdminToken != "" {
		s.adminSum = sha256.Sum256([]byte(cfg.AdminToken))
	}
	if hub != nil {
		s.waker = hub
	}
	for _, o := range opts {
		o(s)
	}
	s.metrics = newMetrics(cfg.Registry, st)
	s.e = s.routes()
	s.startPushWorkers()
	return s
}

// An Option configures a Server.
type Option func(*Server)

// WakeThrough makes the server wake waiting parties (api.QueryWait)
// through n, which must reach the hub of every replica (the PostgreSQL
// broadcaster), instead of through its own hub only.
func WakeThrough(n push.BatchNotifier) Option {
	return func(s *Server) {
		if n != nil {
			s.waker = n
		}
	}
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.e }

// Echo returns the echo instance (tests list its routes).
func (s *Server) Echo() *echo.Echo { return s.e }

func (s *Server) now() time.Time { return s.st.Now() }

func (s *Server) checkAdmin(token string) bool {
	if s.cfg.AdminToken == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], s.adminSum[:]) == 1
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Use(s.requestIDMiddleware, s.observe, s.recoverMiddleware, s.bodyDeadlines)
	r := router{e}

	r.GET(api.PathHealthz, s.healthz)
	r.GET(api.PathReadyz, s.readyz)
	r.GET(api.PathMetrics, echo.WrapHandler(s.metrics.handler()))

	r.POST(api.PathAuthChallenge, s.authChallenge, s.limitByClient)
	r.POST(api.PathAuthToken, s.authToken, s.limitByClient)
	r.POST(api.PathEnroll, s.enroll, s.limitByClient)
	r.POST(api.PathEnrollInfo, s.enrollInfo, s.limitByClient)
	r.POST(api.PathLinkRequests, s.createLinkRequest, s.limitByClient)
	r.GET(api.PathLinkRequest, s.getLinkRequest)

	r.POST(api.PathAdminUsers, s.adminCreateUser, s.requireAdmin)
	r.GET(api.PathAdminUsers, s.adminListUsers, s.requireAdmin)
	r.POST(api.PathAdminUserCodes, s.adminNewCode, s.requireAdmin)
	r.POST(api.PathAdminUserReset, s.adminResetUser, s.requireAdmin)
	r.GET(api.PathAdminUserDevices, s.adminListDevices, s.requireAdmin)
	r.POST(api.PathAdminParties, s.adminCreateParty, s.requireAdmin)
	r.GET(api.PathAdminParties, s.adminListParties, s.requireAdmin)

	r.GET(api.PathDeviceEvents, s.deviceEvents, s.requireDevice)
	r.GET(api.PathDeviceRequests, s.deviceListRequests, s.requireDevice)
	r.GET(api.PathDeviceRequest, s.deviceGetRequest, s.requireDevice)
	r.GET(api.PathDeviceChain, s.deviceChain, s.requireDevice)
	r.POST(api.PathDeviceChain, s.deviceExtendChain, s.requireDevice)
	r.POST(api.PathDeviceLink, s.deviceLink, s.requireDevice)
	r.POST(api.PathDeviceApprove, s.deviceApprove, s.requireDevice)
	r.POST(api.PathDeviceReject, s.deviceReject, s.requireDevice)
	r.POST(api.PathDeviceGrant, s.deviceGrant, s.requireDevice)
	r.POST(api.PathDeviceRefuse, s.deviceRefuse, s.requireDevice)
	r.GET(api.PathDeviceRecords, s.deviceListRecords, s.requireDevice)
	r.GET(api.PathDeviceGrants, s.deviceListGrants, s.requireDevice)
	r.POST(api.PathDeviceRevokeGrant, s.deviceRevokeGrant, s.requireDevice)

	r.GET(api.PathUserKeys, s.userKeys, s.requireParty)
	r.POST(api.PathUserRecords, s.upload, s.requireParty)
	r.GET(api.PathRecord, s.getRecord, s.requireParty)
	r.POST(api.PathRecordAccess, s.requestAccess, s.requireParty)
	r.GET(api.PathRecordContent, s.downloadContent, s.requireParty)
	r.HEAD(api.PathRecordContent, s.downloadContent, s.requireParty)
	r.GET(api.PathRecordGrant, s.getGrant, s.requireParty)
	r.GET(api.PathPartyRecords, s.partyListRecords, s.requireParty)
	r.GET(api.PathPartyGrants, s.partyListGrants, s.requireParty)
	r.GET(api.PathPartyRequest, s.partyGetRequest, s.requireParty)
	return e
}

// MountLog serves the transparency log's public routes (internal/translog
// answers them) through the API's middleware: request ids, metrics,
// recovery. They are not rate limited: tiles are cheap and cacheable, and a
// monitor reads many.
func (s *Server) MountLog(h http.Handler) {
	w := echo.WrapHandler(h)
	for _, p := range []string{api.PathLogCheckpoint, api.PathLogTiles, api.PathLogLeaf, api.PathLogHistory} {
		s.e.GET(echoPath(p), w)
	}
}

// A router registers pkg/api's routes with echo, in echo's syntax.
type router struct{ e *echo.Echo }

func (r router) GET(route string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	r.e.GET(echoPath(route), h, m...)
}

func (r router) POST(route string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	r.e.POST(echoPath(route), h, m...)
}

func (r router) HEAD(route string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	r.e.HEAD(echoPath(route), h, m...)
}

// echoPath turns a route of pkg/api ("/v1/records/{id}") into echo's
// syntax ("/v1/records/:id"), which is also what c.Path() returns, and so
// what metrics and logs name a route by.
func echoPath(route string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(route, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(route[i:], '}')
		if j < 0 {
			break
		}
		b.WriteString(route[:i])
		b.WriteByte(':')
		b.WriteString(route[i+1 : i+j])
		route = route[i+j+1:]
	}
	b.WriteString(route)
	return b.String()
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, api.Health{Status: "ok"})
}

// readyz checks what serving needs: a database that answers, and a blob
// store that can take an upload (writable, with MinFreeSpace free). A
// full data directory fails logins and uploads, so it is not ready.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		s.log.Warn("not ready: database", "error", err.Error())
		return problem(http.StatusServiceUnavailable, api.ProblemUnavailable, "Database unreachable", "the database does not answer")
	}
	if ch, ok := s.blobs.(blob.Checker); ok {
		if err := ch.Check(s.cfg.MinFreeSpace); err != nil {
			s.log.Warn("not ready: blob storage", "error", err.Error())
			return problem(http.StatusServiceUnavailable, api.ProblemUnavailable, "Storage not ready",
				"the blob directory is not writable or has too little free space")
		}
	}
	return c.JSON(http.StatusOK, api.Health{Status: "ready"})
}
