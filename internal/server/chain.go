package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// A user's key chain (pkg/keychain) decides which keys the user's records
// are sealed to: after the first device, which enrolls with the operator's
// one-time code, every device added or revoked and every recovery key set
// or removed is a link signed by an active device of the user. The server
// checks each link with the same code the clients use, stores it, appends
// it to the log, and keeps the user's Device rows and recovery key as a
// mirror of the chain, changed in the same transaction as the link, so
// that uploads are checked against the chain's keys. The operator can end
// a chain (reset) but not extend one.

// lockUser loads the user and locks its row until the transaction ends:
// every change to a user's chain, devices or link requests takes this
// lock first, so those changes happen one at a time and in one order.
func lockUser(tx *store.Tx, id string) (*store.User, error) {
	return findUser(tx.Locked(), id)
}

// chainOf loads and verifies the user's current chain (the links of its
// chain epoch). A stored chain that does not verify is an internal error:
// the database was changed behind the server's back.
func chainOf(db *gorm.DB, u *store.User) (*keychain.State, []store.ChainLink, error) {
	links, err := store.Chain(db, u.ID, u.ChainEpoch)
	if err != nil {
		return nil, nil, err
	}
	st := keychain.New(u.ID)
	for i := range links {
		if err := st.Apply(apiLink(&links[i])); err != nil {
			return nil, nil, fmt.Errorf("the stored key chain of user %s (epoch %d) does not verify: %w", u.ID, u.ChainEpoch, err)
		}
	}
	return st, links, nil
}

func apiLink(l *store.ChainLink) api.ChainLink {
	return api.ChainLink{Statement: string(l.Statement), Signature: string(l.Signature), PublicKey: string(l.PublicKey)}
}

// linkRefused is the 422 for a link the chain does not accept.
func linkRefused(err error) error {
	return unprocessable(api.ProblemBadStatement, "Key chain link refused", err.Error())
}

// parseLink parses a link statement (422 bad-statement if malformed).
func parseLink(stmt string) (*statement.ChainLink, error) {
	l, err := statement.ParseChainLink([]byte(stmt))
	if err != nil {
		return nil, unprocessable(api.ProblemBadStatement, "Invalid statement", err.Error())
	}
	return l, nil
}

// linkMismatch is the 422 naming the fields of a link that differ from
// what the route expects.
func linkMismatch(bad []string) error {
	return unprocessable(api.ProblemBadStatement, "Statement does not match the request", "fields that differ: "+strings.Join(bad, ", "))
}

// extendChain appends link (parsed as l) to the user's current chain, in
// tx, under the user's lock (lockUser): the link must extend the chain as
// it is now (else 409: the chain moved on, fetch it and sign again) and
// keychain.State.Apply must accept it (else 422); the link is then stored
// and logged.
func (s *Server) extendChain(tx *store.Tx, u *store.User, l *statement.ChainLink, link api.ChainLink) error {
	st, _, err := chainOf(tx.DB, u)
	if err != nil {
		return err
	}
	if seq, prev := st.Next(); st.Len() > 0 && (l.Seq != seq || l.Prev != prev) {
		return conflict(fmt.Sprintf("the link does not extend the user's key chain as it is now (next seq %d): fetch the chain and sign again", seq))
	}
	if err := st.Apply(link); err != nil {
		return linkRefused(err)
	}
	if _, err := tx.AppendChainLink(u.ID, u.ChainEpoch, l.Seq, []byte(link.Statement), []byte(link.Signature), []byte(link.PublicKey)); err != nil {
		if errors.Is(err, store.ErrChainMoved) {
			return conflict("another link was appended to the key chain meanwhile: fetch the chain and sign again")
		}
		return err
	}
	return nil
}

// keyInUse returns a 409 if fpr is a registered party's key or any
// device's (of any user, active or revoked).
func keyInUse(db *gorm.DB, fpr string) error {
	use, err := store.KeyUseOf(db, fpr)
	switch {
	case err != nil:
		return err
	case use.Party:
		return conflict("this key is registered as a party")
	case use.Device:
		return conflict("this key is already enrolled as a device")
	}
	return nil
}

// userKeysJSON renders the user's key chain and its keys: the active
// devices, then the recovery key.
func userKeysJSON(u *store.User, links []store.ChainLink, ds []store.Device) api.UserKeys {
	out := api.UserKeys{UserID: u.ID, Chain: []api.ChainLink{}, Keys: []api.RecipientKey{}}
	for i := range links {
		out.Chain = append(out.Chain, apiLink(&links[i]))
	}
	for _, d := range ds {
		out.Keys = append(out.Keys, api.RecipientKey{Role: "device", DeviceID: d.ID, Fingerprint: d.Fingerprint, PublicKey: string(d.PublicKey)})
	}
	if len(u.RecoveryKey) > 0 {
		out.Keys = append(out.Keys, api.RecipientKey{Role: "recovery", Fingerprint: u.RecoveryFingerprint, PublicKey: string(u.RecoveryKey)})
	}
	return out
}

// userKeys: GET /v1/users/{id}/keys (party).
func (s *Server) userKeys(c echo.Context) error {
	id, err := pathID(c, "user")
	if err != nil {
		return err
	}
	return s.serveUserKeys(c, id)
}

// deviceChain: GET /v1/device/chain, the caller's user's keys.
func (s *Server) deviceChain(c echo.Context) error { return s.serveUserKeys(c, deviceOf(c).UserID) }

func (s *Server) serveUserKeys(c echo.Context, userID string) error {
	u, ds, links, err := s.st.UserKeys(c.Request().Context(), userID)
	if err != nil {
		return notFoundAs("user", err)
	}
	return c.JSON(http.StatusOK, userKeysJSON(u, links, ds))
}

// deviceExtendChain: POST /v1/device/chain. The calling device signs a
// link that revokes a device (itself included), or sets or removes the
// recovery key; devices are added by answering their link request.
func (s *Server) deviceExtendChain(c echo.Context) error {
	var link api.ChainLink
	if err := decodeJSON(c, maxKeyJSON, &link); err != nil {
		return err
	}
	d := deviceOf(c)
	l, err := parseLink(link.Statement)
	if err != nil {
		return err
	}
	if l.Action == statement.ActionAddDevice {
		return badRequest("add a device by answering its link request (POST /v1/device/requests/{id}/link)")
	}
	if err := s.checkDeviceLink(d, l, link.Statement, link.Signature, nil); err != nil {
		return err
	}
	var recovery *envelope.Key
	if l.Action == statement.ActionSetRecovery {
		if recovery, err = parsePublicKey(link.PublicKey); err != nil {
			return err
		}
	}
	ctx := c.Request().Context()
	err = s.st.Apply(ctx, deviceActor(d), func(tx *store.Tx) error {
		u, err := lockUser(tx, d.UserID)
		if err != nil {
			return err
		}
		if recovery != nil {
			if err := keyInUse(tx.DB, l.Key); err != nil {
				return err
			}
		}
		if err := s.extendChain(tx, u, l, link); err != nil {
			return err
		}
		switch l.Action {
		case statement.ActionRevokeDevice:
			return s.revokeDevices(tx, u.ID, l.Key)
		case statement.ActionSetRecovery:
			tx.Audit("user.recovery-key", "user", u.ID)
			return tx.SetRecoveryKey(u.ID, recovery.Armor(), recovery.Fingerprint())
		case statement.ActionRemoveRecovery:
			tx.Audit("user.recovery-key.remove", "user", u.ID)
			return tx.SetRecoveryKey(u.ID, nil, "")
		}
		return fmt.Errorf("chain link action %q has no mirror", l.Action)
	})
	if err != nil {
		return err
	}
	return s.deviceChain(c)
}

// revokeDevices revokes the user's active device with key fingerprint
// fpr, in tx: its tokens are deleted at once and, after the commit, its
// event streams end on every replica. It is an error if none matches.
func (s *Server) revokeDevices(tx *store.Tx, userID, fpr string) error {
	ids, err := tx.ActiveDeviceIDs(userID, fpr)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return errors.New("revoking: no active device row matches the key chain")
	}
	return s.revokeDeviceIDs(tx, ids)
}

func (s *Server) revokeDeviceIDs(tx *store.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := tx.RevokeDevices(ids); err != nil {
		return err
	}
	for _, id := range ids {
		tx.Audit("device.revoke", "device", id)
	}
	tx.AfterCommit(func() {
		for _, id := range ids {
			s.endStreams(id)
		}
	})
	return nil
}

// checkDeviceLink checks a link device d sends, before the chain does:
// it is for d's user and signed by d (bad holds the route's own findings),
// dated within the clock skew, and d's signature verifies.
func (s *Server) checkDeviceLink(d *store.Device, l *statement.ChainLink, stmt, sig string, bad []string) error {
	if l.User != d.UserID {
		bad = append(bad, "user")
	}
	if l.Signer != d.Fingerprint {
		bad = append(bad, "signer (must be the calling device)")
	}
	if len(bad) > 0 {
		return linkMismatch(bad)
	}
	if err := s.checkTime(l.Time); err != nil {
		return err
	}
	return s.verifyDevice(d, []byte(stmt), []byte(sig))
}

// verifyDevice checks a device's signature over stmt (422 bad-signature).
func (s *Server) verifyDevice(d *store.Device, stmt, sig []byte) error {
	key, err := storedKey(d.PublicKey)
	if err != nil {
		return err
	}
	if err := statement.Verify(stmt, sig, key); err != nil {
		return unprocessable(api.ProblemBadSignature, "Invalid signature", "the signature does not verify with this device's key")
	}
	return nil
}

// adminResetUser: POST /v1/admin/users/{id}/reset, after the user lost
// every device. It ends the user's key chain: every device is revoked
// (tokens deleted, event streams ended), the recovery key is cleared,
// open link requests expire, unused enrollment codes expire, the chain
// epoch goes up by one (the next chain starts again at seq 0 with a
// device that enrolls with the returned code), and the reset is logged.
// Parties and devices that pinned the old chain refuse the new one until
// they re-pin on purpose: a reset is visible, never silent.
func (s *Server) adminResetUser(c echo.Context) error {
	return s.issueCode(c, http.StatusOK, func(tx *store.Tx, u *store.User) error {
		now := tx.Now()
		ids, err := tx.ActiveDeviceIDs(u.ID, "")
		if err != nil {
			return err
		}
		if err := s.revokeDeviceIDs(tx, ids); err != nil {
			return err
		}
		epoch := u.ChainEpoch + 1
		if err := tx.ResetChain(u.ID, epoch); err != nil {
			return err
		}
		tx.Audit("user.reset", "user", u.ID)
		leaf, err := (&statement.ChainReset{User: u.ID, Epoch: int64(epoch), Time: now.Truncate(time.Second)}).Marshal()
		if err != nil {
			return err
		}
		tx.AppendLog(store.LogChainReset, leaf)
		return nil
	})
}
