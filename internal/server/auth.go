package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/statement"
)

const (
	ctxDevice = "keyholder.device"
	ctxParty  = "keyholder.party"
)

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// randomSecret returns n random bytes as unpadded base64url.
func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func bearer(c echo.Context) string {
	h := c.Request().Header.Get(echo.HeaderAuthorization)
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.checkAdmin(bearer(c)) {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="keyholder-admin"`)
			return unauthorized("a valid admin token is required")
		}
		return next(c)
	}
}

// tokenSubject looks up a bearer token of the given kind.
func (s *Server) tokenSubject(c echo.Context, kind string) (string, error) {
	tok := bearer(c)
	if tok == "" || len(tok) > 128 {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="keyholder"`)
		return "", unauthorized("a bearer token is required")
	}
	t, err := s.st.FindToken(c.Request().Context(), hashSecret(tok))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (t.SubjectKind != kind || !s.now().Before(t.ExpiresAt))) {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="keyholder", error="invalid_token"`)
		return "", unauthorized("the token is invalid, expired or not for this route")
	}
	if err != nil {
		return "", err
	}
	return t.SubjectID, nil
}

// tokenOwner loads the device or party (T) that owns the request's bearer
// token of the given kind; one that no longer exists is a 401 with unknown.
// byToken finds both in one query (every authenticated request runs it);
// when it finds nothing, the token and its owner are looked up one by one
// to say which is missing.
func tokenOwner[T any](s *Server, c echo.Context, kind, unknown string,
	byToken func(context.Context, string) (*T, time.Time, error), find func(context.Context, string) (*T, error)) (*T, error) {
	if tok := bearer(c); tok != "" && len(tok) <= 128 {
		v, expires, err := byToken(c.Request().Context(), hashSecret(tok))
		if err == nil && s.now().Before(expires) {
			return v, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	id, err := s.tokenSubject(c, kind)
	if err != nil {
		return nil, err
	}
	v, err := find(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unauthorized(unknown)
	}
	return v, err
}

func (s *Server) requireDevice(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		d, err := tokenOwner(s, c, store.ActorDevice, "unknown device", s.st.DeviceByToken, s.st.FindDevice)
		if err != nil {
			return err
		}
		if d.Status != store.DeviceActive {
			return unauthorized("the device is revoked")
		}
		c.Set(ctxDevice, d)
		return next(c)
	}
}

func (s *Server) requireParty(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := tokenOwner(s, c, store.ActorParty, "unknown party", s.st.PartyByToken, s.st.FindParty)
		if err != nil {
			return err
		}
		c.Set(ctxParty, p)
		return next(c)
	}
}

func deviceOf(c echo.Context) *store.Device { return c.Get(ctxDevice).(*store.Device) }
func partyOf(c echo.Context) *store.Party   { return c.Get(ctxParty).(*store.Party) }

func deviceActor(d *store.Device) store.Actor { return store.Actor{Kind: store.ActorDevice, ID: d.ID} }
func partyActor(p *store.Party) store.Actor   { return store.Actor{Kind: store.ActorParty, ID: p.ID} }

var adminActor = store.Actor{Kind: store.ActorAdmin, ID: "operator"}

func (s *Server) authChallenge(c echo.Context) error {
	var req api.ChallengeRequest
	if err := decodeJSON(c, 4<<10, &req); err != nil {
		return err
	}
	if !api.FingerprintPattern.MatchString(req.Fingerprint) {
		return badRequest("fingerprint must be 40 or 64 upper-case hex digits")
	}
	nonce := randomSecret(32)
	n := store.Nonce{Hash: hashSecret(nonce), Fingerprint: req.Fingerprint, ExpiresAt: s.now().Add(s.cfg.NonceTTL)}
	err := s.st.Apply(c.Request().Context(), store.Actor{Kind: store.ActorAnon}, func(tx *store.Tx) error {
		return tx.Insert(&n)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.ChallengeResponse{Nonce: nonce, Expires: n.ExpiresAt.UTC()})
}

func (s *Server) authToken(c echo.Context) error {
	var req api.TokenRequest
	if err := decodeJSON(c, 64<<10, &req); err != nil {
		return err
	}
	if !api.FingerprintPattern.MatchString(req.Fingerprint) || req.Nonce == "" || len(req.Nonce) > 128 || req.Signature == "" {
		return badRequest("fingerprint, nonce and signature are required")
	}
	// What is wrong with the signature itself, whatever the key, is said
	// before any lookup, so saying it tells nothing about registrations.
	if len(req.Signature) <= 16<<10 {
		if err := statement.CheckSignatureForm([]byte(req.Signature)); err != nil {
			return unauthorized("the challenge signature is not acceptable: " + err.Error())
		}
	}
	ctx := c.Request().Context()
	// One answer for every failure, so that nobody learns which keys are
	// registered; it names the common cause of each kind of caller.
	deny := unauthorized("the key is not registered (a party: have the operator register this key first, e.g. keyholder register; " +
		"a device: enroll it), or the challenge is unknown, used or expired, or not signed by that key")
	n, err := s.st.FindNonce(ctx, hashSecret(req.Nonce))
	if errors.Is(err, store.ErrNotFound) {
		return deny
	} else if err != nil {
		return err
	}
	now := s.now()
	if n.Used || !now.Before(n.ExpiresAt) || n.Fingerprint != req.Fingerprint {
		return deny
	}
	// The fingerprint must be an active device or a registered party.
	var kind, subject string
	var pub []byte
	if d, err := s.st.DeviceByFingerprint(ctx, req.Fingerprint); err == nil {
		if d.Status != store.DeviceActive {
			return deny
		}
		kind, subject, pub = store.ActorDevice, d.ID, d.PublicKey
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	} else if p, err := s.st.PartyByFingerprint(ctx, req.Fingerprint); err == nil {
		kind, subject, pub = store.ActorParty, p.ID, p.PublicKey
	} else if errors.Is(err, store.ErrNotFound) {
		return deny
	} else {
		return err
	}
	if len(req.Signature) > 16<<10 {
		return deny
	}
	key, err := envelope.ParseKey(pub)
	if err != nil {
		return err
	}
	challenge, err := (&statement.Challenge{Nonce: req.Nonce, Fingerprint: req.Fingerprint}).Marshal()
	if err != nil {
		return deny
	}
	if err := statement.Verify(challenge, []byte(req.Signature), key); err != nil {
		return deny
	}
	token := randomSecret(32)
	t := store.Token{Hash: hashSecret(token), SubjectKind: kind, SubjectID: subject, ExpiresAt: now.Add(s.cfg.TokenTTL)}
	err = s.st.Apply(ctx, store.Actor{Kind: kind, ID: subject}, func(tx *store.Tx) error {
		if fresh, err := tx.UseNonce(n.Hash); err != nil {
			return err
		} else if !fresh {
			return deny
		}
		return tx.Insert(&t)
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.TokenResponse{Token: token, Expires: t.ExpiresAt.UTC()})
}
