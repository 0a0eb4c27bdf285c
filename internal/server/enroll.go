package server

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/push"
	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// The operator's one-time enrollment code lets in only a user's first
// device: the user must have no key chain in its current epoch (a new
// user, or one whose chain the operator reset), and the device brings the
// chain's first link, which adds its own key and is signed by it. Further
// devices are added by a device already on the chain (link requests).

// errHasChain: the user already has a key chain, so no code works for it.
var errHasChain = conflict("the user has a key chain: devices are added from an existing device; " +
	"POST /v1/admin/users/{id}/reset if all are lost")

// errBadCode is the one answer for a code that is unknown, used or expired.
var errBadCode = problem(http.StatusForbidden, api.ProblemForbidden, "Invalid enrollment code", "the code is unknown, used or expired")

// readCode normalizes a code typed by hand (400 if empty or too long).
func readCode(code string) (string, error) {
	code = normalizeCode(code)
	if code == "" || len(code) > 64 {
		return "", badRequest("code is required")
	}
	return code, nil
}

// validCode loads the enrollment code through db: 403 unless it exists,
// is unused and has not expired at now.
func validCode(db *gorm.DB, code string, now time.Time) (*store.EnrollmentCode, error) {
	ec, err := store.EnrollmentCodeByHash(db, hashSecret(code))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadCode
	} else if err != nil {
		return nil, err
	}
	if ec.UsedAt != nil || !now.Before(ec.ExpiresAt) {
		return nil, errBadCode
	}
	return ec, nil
}

// noChain returns errHasChain if the user has a key chain in its current
// epoch.
func noChain(db *gorm.DB, u *store.User) error {
	has, err := store.HasChain(db, u.ID, u.ChainEpoch)
	if err != nil {
		return err
	}
	if has {
		return errHasChain
	}
	return nil
}

// checkPush validates a push target and returns its kind ("local" when
// none is given).
func checkPush(kind, token string) (string, error) {
	switch kind {
	case "", push.KindLocal:
		if token != "" {
			return "", badRequest("push_token is only for push_kind fcm")
		}
		return push.KindLocal, nil
	case push.KindFCM:
		if token == "" || len(token) > 4096 {
			return "", badRequest("push_kind fcm needs a push_token")
		}
		return kind, nil
	}
	return "", badRequest(`push_kind must be "local" or "fcm"`)
}

// enrollInfo: POST /v1/enroll/info. Which user a code is for, so the first
// device can sign its chain's first link; the code stays unused.
func (s *Server) enrollInfo(c echo.Context) error {
	var req api.EnrollInfoRequest
	if err := decodeJSON(c, 4<<10, &req); err != nil {
		return err
	}
	code, err := readCode(req.Code)
	if err != nil {
		return err
	}
	db := s.st.DB(c.Request().Context())
	ec, err := validCode(db, code, s.now())
	if err != nil {
		return err
	}
	u, err := findUser(db, ec.UserID)
	if err != nil {
		return err
	}
	if err := noChain(db, u); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, api.EnrollInfo{UserID: u.ID, Handle: u.Handle})
}

// enroll: POST /v1/enroll. The code must be valid and unused, the user
// without a chain in its current epoch, and the link the first link of
// the user's chain adding public_key, signed by it. The link and the
// device are stored and the code used in one transaction.
func (s *Server) enroll(c echo.Context) error {
	var req api.EnrollRequest
	if err := decodeJSON(c, maxKeyJSON, &req); err != nil {
		return err
	}
	code, err := readCode(req.Code)
	if err != nil {
		return err
	}
	if req.PushKind, err = checkPush(req.PushKind, req.PushToken); err != nil {
		return err
	}
	key, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return err
	}
	if req.Link.Statement == "" || req.Link.Signature == "" {
		return badRequest("link is required: the first link of the user's key chain, adding public_key and signed by it")
	}
	if req.Link.PublicKey == "" {
		req.Link.PublicKey = req.PublicKey
	} else if req.Link.PublicKey != req.PublicKey {
		// The chain binds the key the link carries (key-sha256, checked by
		// the chain); the device row must hold the same key.
		if lk, err := envelope.ParseKey([]byte(req.Link.PublicKey)); err != nil || !bytes.Equal(lk.Public().Bytes(), key.Public().Bytes()) {
			return linkMismatch([]string{"public_key (the link must carry public_key)"})
		}
	}
	l, err := parseLink(req.Link.Statement)
	if err != nil {
		return err
	}
	if l.Key != key.Fingerprint() {
		return linkMismatch([]string{"key (must be public_key's fingerprint)"})
	}
	if err := s.checkTime(l.Time); err != nil {
		return err
	}
	d := store.Device{ID: store.NewID(), Fingerprint: key.Fingerprint(), PublicKey: key.Armor(), Status: store.DeviceActive,
		PushKind: req.PushKind, PushToken: req.PushToken}
	err = s.st.Apply(c.Request().Context(), store.Actor{Kind: store.ActorDevice, ID: d.ID}, func(tx *store.Tx) error {
		ec, err := validCode(tx.DB, code, tx.Now())
		if err != nil {
			return err
		}
		// The user's lock first, then the code's, re-checked under it.
		u, err := lockUser(tx, ec.UserID)
		if err != nil {
			return err
		}
		if ec, err = validCode(tx.Locked(), code, tx.Now()); err != nil {
			return err
		}
		if err := noChain(tx.DB, u); err != nil {
			return err
		}
		if err := keyInUse(tx.DB, d.Fingerprint); err != nil {
			return err
		}
		if err := s.extendChain(tx, u, l, req.Link); err != nil {
			return err
		}
		d.UserID = u.ID
		if err := tx.Insert(&d); err != nil {
			if store.IsUniqueViolation(err) {
				return conflict("this key is already enrolled")
			}
			return err
		}
		if fresh, err := tx.UseEnrollmentCode(ec.ID); err != nil {
			return err
		} else if !fresh {
			return errBadCode
		}
		tx.Audit("device.enroll", "device", d.ID)
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, api.EnrollResponse{DeviceID: d.ID, UserID: d.UserID, Fingerprint: d.Fingerprint})
}
