package server

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// Adding a device (a link request): the new device sends its public key
// (POST /v1/link-requests, no token) and shows keychain.Code of it; every
// active device of the user gets a request of kind "device" (pushed like
// the others, by its random id only), shows the same code for the key the
// server serves, and, once the user has compared the two, signs the
// add-device link (POST /v1/device/requests/{id}/link) or refuses. The
// new device follows its request by id (GET /v1/link-requests/{id}) and
// logs in once it is approved.

// maxOpenLinks bounds the open link requests of one user.
const maxOpenLinks = 5

// findUserRef loads a user by id or, failing that, by handle (404).
func findUserRef(db *gorm.DB, ref string) (*store.User, error) {
	var u *store.User
	err := store.ErrNotFound
	if store.ValidID(ref) {
		u, err = store.UserByID(db, ref)
	}
	if errors.Is(err, store.ErrNotFound) && handleRE.MatchString(ref) {
		u, err = store.UserByHandle(db, ref)
	}
	if err != nil {
		return nil, notFoundAs("user", err)
	}
	return u, nil
}

// linkJSON renders a link request as its new device sees it.
func (s *Server) linkJSON(pd *store.PendingDevice) (api.LinkRequest, error) {
	key, err := storedKey(pd.PublicKey)
	if err != nil {
		return api.LinkRequest{}, err
	}
	state := pd.State
	if state == store.LinkOpen && !s.now().Before(pd.ExpiresAt) {
		state = store.LinkExpired
	}
	return api.LinkRequest{ID: pd.ID, UserID: pd.UserID, Fingerprint: pd.Fingerprint, Code: keychain.Code(key),
		State: state, DeviceID: pd.DeviceID, Expires: pd.ExpiresAt.UTC()}, nil
}

// createLinkRequest: POST /v1/link-requests.
func (s *Server) createLinkRequest(c echo.Context) error {
	var req api.LinkRequestCreate
	if err := decodeJSON(c, maxKeyJSON, &req); err != nil {
		return err
	}
	var err error
	if req.PushKind, err = checkPush(req.PushKind, req.PushToken); err != nil {
		return err
	}
	key, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return err
	}
	if req.User == "" || len(req.User) > 128 {
		return badRequest("user (an id or a handle) is required")
	}
	pd := store.PendingDevice{ID: store.NewID(), Fingerprint: key.Fingerprint(), PublicKey: key.Armor(),
		PushKind: req.PushKind, PushToken: req.PushToken, State: store.LinkOpen}
	err = s.st.Apply(c.Request().Context(), store.Actor{Kind: store.ActorAnon}, func(tx *store.Tx) error {
		u, err := findUserRef(tx.DB, req.User)
		if err != nil {
			return err
		}
		if u, err = lockUser(tx, u.ID); err != nil {
			return err
		}
		now := tx.Now()
		n, err := tx.CountActiveDevices(u.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			return conflict("the user has no active device that could approve a new one")
		}
		if err := keyInUse(tx.DB, pd.Fingerprint); err != nil {
			return err
		}
		if pd.Fingerprint == u.RecoveryFingerprint {
			return conflict("this key is the user's recovery key")
		}
		if n, err = tx.CountOpenLinks(u.ID, now); err != nil {
			return err
		}
		if n >= maxOpenLinks {
			return rateLimited("the user has too many open link requests; wait until they are answered or expire")
		}
		pd.UserID, pd.CreatedAt, pd.ExpiresAt = u.ID, now, now.Add(s.cfg.LinkTTL)
		if err := tx.Insert(&pd); err != nil {
			return err
		}
		q := store.Request{ID: pd.ID, Kind: store.KindDevice, UserID: u.ID, State: store.RequestOpen, CreatedAt: now, ExpiresAt: pd.ExpiresAt}
		if err := tx.Insert(&q); err != nil {
			return err
		}
		tx.Audit("link-request.create", "request", q.ID)
		return nil
	})
	if err != nil {
		return err
	}
	s.notifyUser(pd.UserID, pd.ID)
	out, err := s.linkJSON(&pd)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, out)
}

// getLinkRequest: GET /v1/link-requests/{id}. No token: the random id is
// the secret.
func (s *Server) getLinkRequest(c echo.Context) error {
	id, err := pathID(c, "link request")
	if err != nil {
		return err
	}
	pd, err := s.st.FindPendingDevice(c.Request().Context(), id)
	if err != nil {
		return notFoundAs("link request", err)
	}
	out, err := s.linkJSON(pd)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

// lockOpenLink re-reads a device request and its pending device under
// lock inside tx (after lockUser) and checks they still await an answer.
func lockOpenLink(tx *store.Tx, id string) error {
	q, err := tx.LockedRequest(id)
	if err != nil {
		return err
	}
	if err := requestClosed(q, nil, tx.Now()); err != nil {
		return err
	}
	pd, err := tx.LockedPendingDevice(id)
	if err != nil {
		return err
	}
	if pd.State != store.LinkOpen {
		return problem(http.StatusConflict, api.ProblemAlreadyAnswered, "Request already answered", "the link request is "+pd.State)
	}
	return nil
}

// deviceLink: POST /v1/device/requests/{id}/link. The calling device
// answers a device request with the add-device link of exactly the
// pending key, signed by itself, extending the current chain. The link is
// stored and logged, the device created (active, with the pending push
// target), the request answered and the link request approved, in one
// transaction.
func (s *Server) deviceLink(c echo.Context) error {
	var body api.AnswerRequest
	d, rc, err := s.loadAnswer(c, []string{store.KindDevice}, func() error { return decodeJSON(c, maxKeyJSON, &body) })
	if err != nil {
		return err
	}
	pd := &rc.pending
	l, err := parseLink(body.Statement)
	if err != nil {
		return err
	}
	var bad []string
	if l.Action != statement.ActionAddDevice {
		bad = append(bad, "action (must be add-device)")
	}
	// The key-sha256 the chain checks against the key it carries, which
	// is the pending key (below).
	if l.Key != pd.Fingerprint {
		bad = append(bad, "key (must be the new device's)")
	}
	if err := s.checkDeviceLink(d, l, body.Statement, body.Signature, bad); err != nil {
		return err
	}
	link := api.ChainLink{Statement: body.Statement, Signature: body.Signature, PublicKey: string(pd.PublicKey)}
	nd := store.Device{ID: store.NewID(), UserID: d.UserID, Fingerprint: pd.Fingerprint, PublicKey: pd.PublicKey,
		Status: store.DeviceActive, PushKind: pd.PushKind, PushToken: pd.PushToken}
	err = s.st.Apply(c.Request().Context(), deviceActor(d), func(tx *store.Tx) error {
		u, err := lockUser(tx, d.UserID)
		if err != nil {
			return err
		}
		if err := lockOpenLink(tx, pd.ID); err != nil {
			return err
		}
		if err := keyInUse(tx.DB, nd.Fingerprint); err != nil {
			return err
		}
		if err := s.extendChain(tx, u, l, link); err != nil {
			return err
		}
		if err := tx.Insert(&nd); err != nil {
			if store.IsUniqueViolation(err) {
				return conflict("this key is already enrolled")
			}
			return err
		}
		if err := tx.AnswerRequest(pd.ID, store.AnswerApproved, d.ID); err != nil {
			return err
		}
		if err := tx.CloseLink(pd.ID, store.LinkApproved, nd.ID); err != nil {
			return err
		}
		tx.Audit("request.answer", "request", pd.ID)
		tx.Audit("device.add", "device", nd.ID)
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.AnswerResponse{RequestID: pd.ID, State: api.RequestAnswered, Answer: api.AnswerApproved})
}

// refuseLink refuses a device request (POST /v1/device/requests/{id}/refuse).
func (s *Server) refuseLink(c echo.Context, d *store.Device, rc *requestContext) error {
	err := s.st.Apply(c.Request().Context(), deviceActor(d), func(tx *store.Tx) error {
		if _, err := lockUser(tx, d.UserID); err != nil {
			return err
		}
		if err := lockOpenLink(tx, rc.req.ID); err != nil {
			return err
		}
		if err := tx.AnswerRequest(rc.req.ID, store.AnswerRefused, d.ID); err != nil {
			return err
		}
		if err := tx.CloseLink(rc.req.ID, store.LinkRefused, ""); err != nil {
			return err
		}
		tx.Audit("request.refuse", "request", rc.req.ID)
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.AnswerResponse{RequestID: rc.req.ID, State: api.RequestAnswered, Answer: api.AnswerRefused})
}
