package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// A PinStore remembers users' key chains between runs (keychain.Pin): the
// first device, and the last link seen. With one, a chain the server
// serves later must extend the remembered one, and the first chain seen of
// a user is pinned on first use. Pin returns nil, nil for a user it has no
// pin for.
type PinStore interface {
	Pin(user string) (*keychain.Pin, error)
	SetPin(p *keychain.Pin) error
}

// WithPinStore makes the client check every user's key chain against the
// pins in ps and pin it on first use. Without a store, a chain is verified
// link by link but not compared with any earlier one.
func WithPinStore(ps PinStore) Option { return func(c *Client) { c.pins = ps } }

// UserChain fetches the user's key chain (GET /v1/users/{id}/keys),
// verifies every link (keychain.Verify), checks that it extends the pinned
// chain, and pins the result. With WithLog, the chain must also be the
// one the log holds for the user (waiting for new links to be logged). The keys it makes current are the only ones
// a record is sealed to, and the only devices whose approvals and grants
// the client accepts.
func (c *Client) UserChain(ctx context.Context, userID string) (*keychain.State, error) {
	for retried := false; ; retried = true {
		uk, err := c.UserKeys(ctx, userID)
		if err != nil {
			return nil, err
		}
		ch, _, err := c.checkChain(ctx, userID, uk, true)
		if errors.Is(err, errLogAhead) && !retried {
			continue // a link may have been added since the chain was served
		}
		return ch, err
	}
}

// OwnChain is UserChain for a device: its own user's chain
// (GET /v1/device/chain), which must hold the device as active. With
// WithLog, it also checks every decision made in the user's name since
// the last check (WithHistoryStore): each must be signed by a device on
// the chain.
func (c *Client) OwnChain(ctx context.Context) (*keychain.State, error) { return c.ownChain(ctx, nil) }

// ownChain is OwnChain starting from served, the chain a request's detail
// carried (api.RequestDetail.Chain), if any: it is checked exactly as the
// route's, and the route is asked only when the log or the pin holds more
// of the chain than served (a link added since it was read). Any other
// refusal of a served chain stands.
func (c *Client) ownChain(ctx context.Context, served *api.UserKeys) (*keychain.State, error) {
	var uk api.UserKeys
	var ch *keychain.State
	var reset int64
	for retried := false; ; retried = true {
		if served != nil && !retried {
			uk = *served
		} else {
			// A fresh value: the served one's links are the caller's.
			uk = api.UserKeys{}
			if err := c.doJSON(ctx, http.MethodGet, api.PathDeviceChain, authKey, nil, &uk); err != nil {
				return nil, err
			}
		}
		var err error
		ch, reset, err = c.checkChain(ctx, uk.UserID, &uk, true)
		// A link may have been added since the chain was served; a chain
		// served with a request may also be older than the pin (the
		// chain grew between the request's read and its check): the
		// route serves it now.
		if (errors.Is(err, errLogAhead) || served != nil && errors.Is(err, keychain.ErrBehind)) && !retried {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if m, ok := ch.Device(c.id.Fingerprint()); !ok || !m.Active() {
		return nil, fmt.Errorf("%w: this device (%s) is not an active device of user %s's key chain", keychain.ErrChain, c.id.Fingerprint(), uk.UserID)
	}
	if err := c.checkDecisions(ctx, ch, reset); err != nil {
		return nil, err
	}
	return ch, nil
}

// checkChain verifies a served chain, and, with logged, checks it against
// the log (returning the log index of the user's last chain reset), before
// comparing it with the pin.
func (c *Client) checkChain(ctx context.Context, userID string, uk *api.UserKeys, logged bool) (*keychain.State, int64, error) {
	if uk.UserID != userID {
		return nil, 0, fmt.Errorf("%w: asked for user %s's chain, got user %s's", keychain.ErrChain, userID, uk.UserID)
	}
	ch, err := c.chains.Verify(userID, uk.Chain)
	if err != nil {
		return nil, 0, err
	}
	reset := int64(-1)
	if logged {
		if reset, err = c.checkChainLogged(ctx, userID, uk.Chain); err != nil {
			return nil, 0, err
		}
	}
	if c.pins == nil {
		return ch, reset, nil
	}
	pin, err := c.pins.Pin(userID)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the pin of user %s: %w", userID, err)
	}
	if err := ch.Extends(pin); err != nil {
		return nil, 0, err
	}
	now := ch.Pin()
	if pin != nil && *pin == *now {
		return ch, reset, nil // unchanged: a device checks the chain on every request
	}
	if err := c.pins.SetPin(now); err != nil {
		return nil, 0, fmt.Errorf("saving the pin of user %s: %w", userID, err)
	}
	return ch, reset, nil
}

// chainDevice returns the key of device fpr from the user's verified
// chain: approvals and grants count only from devices on it.
func chainDevice(ch *keychain.State, fpr string) (*envelope.Key, error) {
	m, ok := ch.Device(fpr)
	if !ok {
		return nil, verifyErr("device %s is not on user %s's key chain", fpr, ch.User())
	}
	return m.Key, nil
}

// ExtendChain signs the link that extends the device's own chain with
// action on target (revoke-device, set-recovery, remove-recovery) and
// sends it (POST /v1/device/chain).
func (c *Client) ExtendChain(ctx context.Context, action string, target *envelope.Key) (*api.UserKeys, error) {
	ch, err := c.OwnChain(ctx)
	if err != nil {
		return nil, err
	}
	if action == statement.ActionRevokeDevice || action == statement.ActionRemoveRecovery {
		// The link names the key as the chain holds it.
		if m, ok := ch.Device(target.Fingerprint()); ok {
			target = m.Key
		} else if r := ch.Recovery(); r != nil && r.Fingerprint() == target.Fingerprint() {
			target = r
		}
	}
	link, err := ch.Sign(action, target, c.id.Key, time.Now())
	if err != nil {
		return nil, err
	}
	var out api.UserKeys
	if err := c.doJSON(ctx, http.MethodPost, api.PathDeviceChain, authKey, link, &out); err != nil {
		return nil, err
	}
	// The new link is checked against the log on the next OwnChain: it is
	// sequenced about a second from now.
	if _, _, err := c.checkChain(ctx, out.UserID, &out, false); err != nil {
		return nil, err
	}
	return &out, nil
}

// ErrCodeMismatch reports a code typed by the user that is not the code of
// the device asking to be added.
var ErrCodeMismatch = errors.New("the code is not the one of the device asking to be added")

// AddDevice answers a device request with the code the user read off the
// new device (typed, or compared and confirmed): only if it is
// keychain.Code of the key the request asks to add does it sign the
// add-device link and send it. Digits are compared; dashes and spaces do
// not matter.
func (c *Client) AddDevice(ctx context.Context, cr *CheckedRequest, code string) (*api.AnswerResponse, error) {
	if cr.Detail.Kind != KindDevice || cr.NewDevice == nil || cr.Chain == nil {
		return nil, errors.New("not a device request")
	}
	if want := digits(keychain.Code(cr.NewDevice)); digits(code) != want {
		return nil, ErrCodeMismatch
	}
	link, err := cr.Chain.Sign(statement.ActionAddDevice, cr.NewDevice, c.id.Key, time.Now())
	if err != nil {
		return nil, err
	}
	var out api.AnswerResponse
	err = c.doJSON(ctx, http.MethodPost, api.Path(api.PathDeviceLink, cr.Detail.ID), authKey,
		api.AnswerRequest{Statement: link.Statement, Signature: link.Signature}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// digits keeps the decimal digits of s.
func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// MatchesCode reports whether code, as the user typed it, is the code of
// the device a device request asks to add.
func (cr *CheckedRequest) MatchesCode(code string) bool {
	return cr.NewDevice != nil && digits(code) == digits(keychain.Code(cr.NewDevice))
}
