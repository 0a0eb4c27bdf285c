package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/keychain"
	"github.com/keyholder/keyholder/pkg/statement"
)

// --- Operator (admin token) ---

// CreateUser creates a user and its first enrollment code.
func (c *Client) CreateUser(ctx context.Context, handle string) (*api.CreateUserResponse, error) {
	var out api.CreateUserResponse
	err := c.doJSON(ctx, http.MethodPost, api.PathAdminUsers, authAdmin, api.CreateUserRequest{Handle: handle}, &out)
	return &out, err
}

// NewEnrollmentCode issues another enrollment code for a user.
func (c *Client) NewEnrollmentCode(ctx context.Context, userID string) (*api.EnrollmentCode, error) {
	var out api.EnrollmentCode
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathAdminUserCodes, userID), authAdmin, struct{}{}, &out)
	return &out, err
}

// ListUsers lists the users: the first page, of the server's default size
// (api.DefaultPageSize); ListUsersPage and All read further.
func (c *Client) ListUsers(ctx context.Context) ([]api.User, error) {
	us, _, err := c.ListUsersPage(ctx, api.Page{})
	return us, err
}

// ListUsersPage returns one page of the users, oldest first, and the
// cursor of the next page ("" after the last).
func (c *Client) ListUsersPage(ctx context.Context, p api.Page) ([]api.User, string, error) {
	var out api.UserList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathAdminUsers), authAdmin, nil, &out)
	return out.Users, out.NextCursor, err
}

// ResetUser ends a user's key chain after the user lost every device:
// all devices are revoked, and the returned enrollment code starts a new
// chain. Parties that pinned the old chain refuse the new one until they
// re-pin on purpose.
func (c *Client) ResetUser(ctx context.Context, userID string) (*api.EnrollmentCode, error) {
	var out api.EnrollmentCode
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathAdminUserReset, userID), authAdmin, struct{}{}, &out)
	return &out, err
}

// ListDevices lists a user's devices.
func (c *Client) ListDevices(ctx context.Context, userID string) ([]api.Device, error) {
	var out struct {
		Devices []api.Device `json:"devices"`
	}
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathAdminUserDevices, userID), authAdmin, nil, &out)
	return out.Devices, err
}

// CreateParty registers a third party with its armored public key.
func (c *Client) CreateParty(ctx context.Context, name string, publicKey []byte) (*api.Party, error) {
	var out api.Party
	err := c.doJSON(ctx, http.MethodPost, api.PathAdminParties, authAdmin, api.CreatePartyRequest{Name: name, PublicKey: string(publicKey)}, &out)
	return &out, err
}

// ListParties lists the registered parties: the first page, of the
// server's default size; ListPartiesPage and All read further.
func (c *Client) ListParties(ctx context.Context) ([]api.Party, error) {
	ps, _, err := c.ListPartiesPage(ctx, api.Page{})
	return ps, err
}

// ListPartiesPage returns one page of the parties, oldest first, and the
// cursor of the next page ("" after the last).
func (c *Client) ListPartiesPage(ctx context.Context, p api.Page) ([]api.Party, string, error) {
	var out api.PartyList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathAdminParties), authAdmin, nil, &out)
	return out.Parties, out.NextCursor, err
}

// --- Device ---

// Enroll makes the client's key the first device of the user of an
// enrollment code: it asks which user the code is for, signs the first
// link of the user's key chain with the key, and sends both. It needs no
// token: the code is the credential.
func (c *Client) Enroll(ctx context.Context, code, pushKind, pushToken string) (*api.EnrollResponse, error) {
	if c.id == nil {
		return nil, errors.New("client: enrolling needs the device key")
	}
	var info api.EnrollInfo
	if err := c.doJSON(ctx, http.MethodPost, api.PathEnrollInfo, authNone, api.EnrollInfoRequest{Code: code}, &info); err != nil {
		return nil, err
	}
	link, err := keychain.New(info.UserID).Sign(statement.ActionAddDevice, c.id.Key, c.id.Key, time.Now())
	if err != nil {
		return nil, err
	}
	req := api.EnrollRequest{Code: code, PublicKey: link.PublicKey, Link: link, PushKind: pushKind, PushToken: pushToken}
	var out api.EnrollResponse
	if err := c.doJSON(ctx, http.MethodPost, api.PathEnroll, authNone, req, &out); err != nil {
		return nil, err
	}
	if out.UserID != info.UserID || out.Fingerprint != c.id.Fingerprint() {
		return nil, fmt.Errorf("the server enrolled key %s for user %s, not this key for user %s", out.Fingerprint, out.UserID, info.UserID)
	}
	return &out, nil
}

// RequestLink asks user's devices to add the client's key as a new device
// (user: an id or a handle). The returned Code is keychain.Code of the
// key: show it, so the user can compare it with the one an existing device
// shows before approving. It needs no token.
func (c *Client) RequestLink(ctx context.Context, user, pushKind, pushToken string) (*api.LinkRequest, error) {
	if c.id == nil {
		return nil, errors.New("client: adding a device needs the device key")
	}
	var out api.LinkRequest
	err := c.doJSON(ctx, http.MethodPost, api.PathLinkRequests, authNone,
		api.LinkRequestCreate{User: user, PublicKey: string(c.id.Key.Public().Armor()), PushKind: pushKind, PushToken: pushToken}, &out)
	if err != nil {
		return nil, err
	}
	if out.Fingerprint != c.id.Fingerprint() || out.Code != keychain.Code(c.id.Key) {
		return nil, fmt.Errorf("the server answered the link request for key %s (code %s), not this key", out.Fingerprint, out.Code)
	}
	return &out, nil
}

// LinkState fetches the state of a link request made by RequestLink.
func (c *Client) LinkState(ctx context.Context, id string) (*api.LinkRequest, error) {
	var out api.LinkRequest
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathLinkRequest, id), authNone, nil, &out)
	return &out, err
}

// DeviceRequests lists the open requests this device can answer: the
// first page, of the server's default size; DeviceRequestsPage and All
// read further.
func (c *Client) DeviceRequests(ctx context.Context) ([]api.RequestSummary, error) {
	rs, _, err := c.DeviceRequestsPage(ctx, api.Page{})
	return rs, err
}

// DeviceRequestsPage returns one page of the open requests this device
// can answer, oldest first, and the cursor of the next page ("" after
// the last).
func (c *Client) DeviceRequestsPage(ctx context.Context, p api.Page) ([]api.RequestSummary, string, error) {
	var out api.RequestList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathDeviceRequests), authKey, nil, &out)
	return out.Requests, out.NextCursor, err
}

// DeviceRequest fetches everything the device needs to decide a request.
func (c *Client) DeviceRequest(ctx context.Context, id string) (*api.RequestDetail, error) {
	var out api.RequestDetail
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathDeviceRequest, id), authKey, nil, &out)
	return &out, err
}

// Approve answers an approval request with a signed approval statement.
func (c *Client) Approve(ctx context.Context, requestID string, statement, signature []byte) (*api.AnswerResponse, error) {
	var out api.AnswerResponse
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathDeviceApprove, requestID), authKey,
		api.AnswerRequest{Statement: string(statement), Signature: string(signature)}, &out)
	return &out, err
}

// Reject answers an approval request with a signed rejection statement.
func (c *Client) Reject(ctx context.Context, requestID string, statement, signature []byte) (*api.AnswerResponse, error) {
	var out api.AnswerResponse
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathDeviceReject, requestID), authKey,
		api.AnswerRequest{Statement: string(statement), Signature: string(signature)}, &out)
	return &out, err
}

// Grant answers an access request with the key packet rewrapped to the
// requester and the signed grant statement.
func (c *Client) Grant(ctx context.Context, requestID string, keyPacket, statement, signature []byte) (*api.AnswerResponse, error) {
	var out api.AnswerResponse
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathDeviceGrant, requestID), authKey,
		api.GrantAnswer{KeyPacket: keyPacket, Statement: string(statement), Signature: string(signature)}, &out)
	return &out, err
}

// Refuse answers an access request with a refusal.
func (c *Client) Refuse(ctx context.Context, requestID string) (*api.AnswerResponse, error) {
	var out api.AnswerResponse
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathDeviceRefuse, requestID), authKey, api.RefuseAnswer{}, &out)
	return &out, err
}

// DeviceRecords lists the records of the device's user: the first page,
// newest first, of the server's default size; DeviceRecordsPage and All
// read further.
func (c *Client) DeviceRecords(ctx context.Context) ([]api.Record, error) {
	rs, _, err := c.DeviceRecordsPage(ctx, api.Page{})
	return rs, err
}

// DeviceRecordsPage returns one page of the records of the device's user,
// newest first, and the cursor of the next page ("" after the last).
func (c *Client) DeviceRecordsPage(ctx context.Context, p api.Page) ([]api.Record, string, error) {
	var out api.RecordList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathDeviceRecords), authKey, nil, &out)
	return out.Records, out.NextCursor, err
}

// DeviceGrants lists the grants of the device's user: the first page,
// newest first, of the server's default size; DeviceGrantsPage and All
// read further.
func (c *Client) DeviceGrants(ctx context.Context) ([]api.Grant, error) {
	gs, _, err := c.DeviceGrantsPage(ctx, api.Page{})
	return gs, err
}

// DeviceGrantsPage returns one page of the grants of the device's user,
// newest first, and the cursor of the next page ("" after the last).
func (c *Client) DeviceGrantsPage(ctx context.Context, p api.Page) ([]api.Grant, string, error) {
	var out api.GrantList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathDeviceGrants), authKey, nil, &out)
	return out.Grants, out.NextCursor, err
}

// RevokeGrant revokes a grant: the server stops serving the record to its
// grantee (a key packet already delivered cannot be recalled).
func (c *Client) RevokeGrant(ctx context.Context, grantID string) (*api.Grant, error) {
	var out api.Grant
	err := c.doJSON(ctx, http.MethodPost, api.Path(api.PathDeviceRevokeGrant, grantID), authKey, struct{}{}, &out)
	return &out, err
}

// --- Party ---

// UserKeys returns the keys every record for the user must be sealed to.
func (c *Client) UserKeys(ctx context.Context, userID string) (*api.UserKeys, error) {
	var out api.UserKeys
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathUserKeys, userID), authKey, nil, &out)
	return &out, err
}

// Record returns a record's state, with the device's decision statement
// and signature once there is one.
func (c *Client) Record(ctx context.Context, id string) (*api.Record, error) {
	var out api.Record
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathRecord, id), authKey, nil, &out)
	return &out, err
}

// RequestAccess asks the user's device to open an approved record for the
// caller. expiresIn is the grant lifetime asked for, in seconds (0: the
// server's maximum).
func (c *Client) RequestAccess(ctx context.Context, recordID, purpose string, expiresIn int64) (*api.AccessResponse, error) {
	return c.RequestAccessIdempotent(ctx, recordID, purpose, expiresIn, "")
}

// RequestAccessIdempotent is RequestAccess with an Idempotency-Key (none
// if key is empty): sent again with the same key after a lost answer, it
// returns the request made first, and the phone is asked once.
func (c *Client) RequestAccessIdempotent(ctx context.Context, recordID, purpose string, expiresIn int64, key string) (*api.AccessResponse, error) {
	var hdr http.Header
	if key != "" {
		hdr = http.Header{api.HeaderIdempotencyKey: {key}}
	}
	var out api.AccessResponse
	err := c.doJSONHeader(ctx, http.MethodPost, api.Path(api.PathRecordAccess, recordID), authKey, hdr,
		api.AccessRequest{Purpose: purpose, ExpiresIn: expiresIn}, &out)
	return &out, err
}

// RecordByIdempotencyKey returns the caller's record uploaded with this
// Idempotency-Key, or nil if there is none.
func (c *Client) RecordByIdempotencyKey(ctx context.Context, key string) (*api.Record, error) {
	var out api.RecordList
	err := c.doJSON(ctx, http.MethodGet, api.PathPartyRecords+"?"+url.Values{api.QueryIdempotencyKey: {key}}.Encode(), authKey, nil, &out)
	if err != nil || len(out.Records) == 0 {
		return nil, err
	}
	return &out.Records[0], nil
}

// RecordGrant returns the caller's current grant on a record, with the key
// packet and the device's signed grant statement.
func (c *Client) RecordGrant(ctx context.Context, recordID string) (*api.Grant, error) {
	var out api.Grant
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathRecordGrant, recordID), authKey, nil, &out)
	return &out, err
}

// PartyRecords lists the caller's submissions: the first page, newest
// first, of the server's default size; PartyRecordsPage and All read
// further.
func (c *Client) PartyRecords(ctx context.Context) ([]api.Record, error) {
	rs, _, err := c.PartyRecordsPage(ctx, api.Page{})
	return rs, err
}

// PartyRecordsPage returns one page of the caller's submissions, newest
// first, and the cursor of the next page ("" after the last).
func (c *Client) PartyRecordsPage(ctx context.Context, p api.Page) ([]api.Record, string, error) {
	var out api.RecordList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathPartyRecords), authKey, nil, &out)
	return out.Records, out.NextCursor, err
}

// PartyGrants lists the caller's grants: the first page, newest first, of
// the server's default size; PartyGrantsPage and All read further.
func (c *Client) PartyGrants(ctx context.Context) ([]api.Grant, error) {
	gs, _, err := c.PartyGrantsPage(ctx, api.Page{})
	return gs, err
}

// PartyGrantsPage returns one page of the caller's grants, newest first,
// and the cursor of the next page ("" after the last).
func (c *Client) PartyGrantsPage(ctx context.Context, p api.Page) ([]api.Grant, string, error) {
	var out api.GrantList
	err := c.doJSON(ctx, http.MethodGet, p.Query(api.PathPartyGrants), authKey, nil, &out)
	return out.Grants, out.NextCursor, err
}

// AccessRequestStatus returns where one of the caller's access requests
// stands.
func (c *Client) AccessRequestStatus(ctx context.Context, requestID string) (*api.AccessStatus, error) {
	var out api.AccessStatus
	err := c.doJSON(ctx, http.MethodGet, api.Path(api.PathPartyRequest, requestID), authKey, nil, &out)
	return &out, err
}
