package server

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

var handleRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

const maxKeyJSON = 256 << 10

// newEnrollmentCode returns a one-time code: 20 base32 characters (100
// bits) in groups of four.
func newEnrollmentCode() string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:20]
	var out strings.Builder
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			out.WriteByte('-')
		}
		out.WriteString(s[i : i+4])
	}
	return out.String()
}

// normalizeCode makes codes typed by hand comparable.
func normalizeCode(c string) string {
	c = strings.ToUpper(c)
	c = strings.NewReplacer("-", "", " ", "").Replace(c)
	return c
}

// parsePublicKey parses an uploaded armored public key; an unacceptable
// key, or one with private key material, is a 422 invalid-key.
func parsePublicKey(armored string) (*envelope.Key, error) {
	key, err := envelope.ParseKey([]byte(armored))
	if err != nil {
		return nil, problem(http.StatusUnprocessableEntity, api.ProblemInvalidKey, "Invalid key", "public_key is not an acceptable OpenPGP public key: "+err.Error())
	}
	if key.HasPrivate() {
		return nil, problem(http.StatusUnprocessableEntity, api.ProblemInvalidKey, "Invalid key", "send the public key only")
	}
	return key, nil
}

func (s *Server) addCode(tx *store.Tx, userID string) (string, time.Time, error) {
	code := newEnrollmentCode()
	ec := store.EnrollmentCode{ID: store.NewID(), UserID: userID, CodeHash: hashSecret(normalizeCode(code)),
		ExpiresAt: tx.Now().Add(s.cfg.CodeTTL)}
	if err := tx.Insert(&ec); err != nil {
		return "", time.Time{}, err
	}
	tx.Audit("enrollment-code.create", "user", userID)
	return code, ec.ExpiresAt.UTC(), nil
}

func (s *Server) adminCreateUser(c echo.Context) error {
	var req api.CreateUserRequest
	if err := decodeJSON(c, 4<<10, &req); err != nil {
		return err
	}
	if !handleRE.MatchString(req.Handle) {
		return badRequest("handle must be 1-128 characters of letters, digits and ._@+-")
	}
	u := store.User{ID: store.NewID(), Handle: req.Handle}
	var resp api.CreateUserResponse
	err := s.st.Apply(c.Request().Context(), adminActor, func(tx *store.Tx) error {
		if err := tx.Insert(&u); err != nil {
			if store.IsUniqueViolation(err) {
				return conflict("a user with this handle exists")
			}
			return err
		}
		tx.Audit("user.create", "user", u.ID)
		code, exp, err := s.addCode(tx, u.ID)
		resp = api.CreateUserResponse{ID: u.ID, Handle: u.Handle, Code: code, CodeExpires: exp}
		return err
	})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, resp)
}

// adminNewCode: POST /v1/admin/users/{id}/enrollment-codes, only for a
// user without a key chain (a code admits only a first device).
func (s *Server) adminNewCode(c echo.Context) error {
	return s.issueCode(c, http.StatusCreated, func(tx *store.Tx, u *store.User) error { return noChain(tx.DB, u) })
}

// issueCode runs prepare on the path's user, locked, and issues a new
// enrollment code for it in the same transaction; it answers the code
// with status.
func (s *Server) issueCode(c echo.Context, status int, prepare func(tx *store.Tx, u *store.User) error) error {
	id, err := pathID(c, "user")
	if err != nil {
		return err
	}
	var resp api.EnrollmentCode
	err = s.st.Apply(c.Request().Context(), adminActor, func(tx *store.Tx) error {
		u, err := lockUser(tx, id)
		if err != nil {
			return err
		}
		if err := prepare(tx, u); err != nil {
			return err
		}
		code, exp, err := s.addCode(tx, u.ID)
		resp = api.EnrollmentCode{UserID: u.ID, Code: code, CodeExpires: exp}
		return err
	})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, resp)
}

func (s *Server) adminListUsers(c echo.Context) error {
	p, err := pageOf(c)
	if err != nil {
		return err
	}
	users, next, err := s.st.ListUsers(c.Request().Context(), p)
	if err != nil {
		return err
	}
	out := api.UserList{Users: make([]api.User, 0, len(users)), NextCursor: nextCursor(next)}
	for _, u := range users {
		out.Users = append(out.Users, api.User{ID: u.ID, Handle: u.Handle, Created: u.CreatedAt.UTC(), RecoveryFingerprint: u.RecoveryFingerprint, Devices: u.ActiveDevices})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) adminCreateParty(c echo.Context) error {
	var req api.CreatePartyRequest
	if err := decodeJSON(c, maxKeyJSON, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 256 {
		return badRequest("name must be 1-256 characters")
	}
	key, err := parsePublicKey(req.PublicKey)
	if err != nil {
		return err
	}
	// A key that can receive no record at all (a v6 key that does not
	// advertise SEIPDv2, as OpenPGP.js 6 makes without aeadProtect) is
	// refused now rather than at every access request.
	if errCompat, errModern := key.CanReceive(envelope.Compat), key.CanReceive(envelope.Modern); errCompat != nil && errModern != nil {
		return problem(http.StatusUnprocessableEntity, api.ProblemInvalidKey, "Invalid key",
			fmt.Sprintf("this key can receive no record: compat: %v; modern: %v", errCompat, errModern))
	}
	p := store.Party{ID: store.NewID(), Name: req.Name, Fingerprint: key.Fingerprint(), PublicKey: key.Armor()}
	err = s.st.Apply(c.Request().Context(), adminActor, func(tx *store.Tx) error {
		if use, err := store.KeyUseOf(tx.DB, p.Fingerprint); err != nil {
			return err
		} else if use.Device {
			return conflict("this key is enrolled as a device")
		}
		if err := tx.Insert(&p); err != nil {
			if store.IsUniqueViolation(err) {
				return conflict("a party with this key exists")
			}
			return err
		}
		tx.Audit("party.create", "party", p.ID)
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, api.Party{ID: p.ID, Name: p.Name, Fingerprint: p.Fingerprint, Created: p.CreatedAt.UTC()})
}

func (s *Server) adminListParties(c echo.Context) error {
	pg, err := pageOf(c)
	if err != nil {
		return err
	}
	ps, next, err := s.st.ListParties(c.Request().Context(), pg)
	if err != nil {
		return err
	}
	out := api.PartyList{Parties: make([]api.Party, 0, len(ps)), NextCursor: nextCursor(next)}
	for _, p := range ps {
		out.Parties = append(out.Parties, api.Party{ID: p.ID, Name: p.Name, Fingerprint: p.Fingerprint, Created: p.CreatedAt.UTC()})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) adminListDevices(c echo.Context) error {
	id, err := pathID(c, "user")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if _, err := findUser(s.st.DB(ctx), id); err != nil {
		return err
	}
	ds, err := s.st.ListDevices(ctx, id)
	if err != nil {
		return err
	}
	out := make([]api.Device, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceJSON(d))
	}
	return c.JSON(http.StatusOK, map[string]any{"devices": out})
}
