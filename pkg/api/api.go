// Package api holds the JSON wire types of Keyholder's HTTP API, shared by
// the server (internal/server) and the Go SDK (pkg/client): route paths,
// request and response bodies, the authentication challenge text and the
// problem type URIs of error responses (RFC 9457).
//
// Conventions: ids are 32 lower-case hex digits; fingerprints upper-case hex;
// binary values (key packets) are standard base64; armored keys, statements
// and signatures are strings; times are RFC 3339 in UTC.
package api

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Route paths. "{id}" is a path parameter, as in OpenAPI and Go's
// http.ServeMux patterns; Path fills it in.
const (
	PathAuthChallenge = "/v1/auth/challenge"
	PathAuthToken     = "/v1/auth/token"

	PathAdminUsers       = "/v1/admin/users"
	PathAdminUserCodes   = "/v1/admin/users/{id}/enrollment-codes"
	PathAdminUserReset   = "/v1/admin/users/{id}/reset"
	PathAdminUserDevices = "/v1/admin/users/{id}/devices"
	PathAdminParties     = "/v1/admin/parties"

	PathEnroll            = "/v1/enroll"
	PathEnrollInfo        = "/v1/enroll/info"
	PathLinkRequests      = "/v1/link-requests"
	PathLinkRequest       = "/v1/link-requests/{id}"
	PathDeviceChain       = "/v1/device/chain"
	PathDeviceLink        = "/v1/device/requests/{id}/link"
	PathDeviceEvents      = "/v1/device/events"
	PathDeviceRequests    = "/v1/device/requests"
	PathDeviceRequest     = "/v1/device/requests/{id}"
	PathDeviceApprove     = "/v1/device/requests/{id}/approve"
	PathDeviceReject      = "/v1/device/requests/{id}/reject"
	PathDeviceGrant       = "/v1/device/requests/{id}/grant"
	PathDeviceRefuse      = "/v1/device/requests/{id}/refuse"
	PathDeviceRecords     = "/v1/device/records"
	PathDeviceGrants      = "/v1/device/grants"
	PathDeviceRevokeGrant = "/v1/device/grants/{id}/revoke"
	PathUserKeys          = "/v1/users/{id}/keys"
	PathUserRecords       = "/v1/users/{id}/records"
	PathRecord            = "/v1/records/{id}"
	PathRecordAccess      = "/v1/records/{id}/access"
	PathRecordContent     = "/v1/records/{id}/content"
	PathRecordGrant       = "/v1/records/{id}/grant"
	PathPartyRecords      = "/v1/party/records"
	PathPartyGrants       = "/v1/party/grants"
	PathPartyRequest      = "/v1/party/requests/{id}"

	// The transparency log (docs/protocol.md §7), public: the C2SP
	// tlog-tiles read API under /log/, and the proofs clients check.
	PathLogCheckpoint      = "/log/checkpoint"
	PathLogTiles           = "/log/tile/*"
	PathLogLeaf            = "/v1/log/leaves/{hash}"
	PathLogHistory         = "/v1/log/users/{id}/{history}"
	PathHealthz            = "/healthz"
	PathReadyz             = "/readyz"
	PathMetrics            = "/metrics"
	HeaderIdempotencyKey   = "Idempotency-Key"
	ContentTypeProblemJSON = "application/problem+json"
)

// Path fills the "{id}" parameter of a route path.
func Path(route, id string) string {
	return strings.ReplaceAll(route, "{id}", id)
}

// RecordState is where a record's approval stands.
type RecordState string

// Record states.
const (
	RecordPending  RecordState = "pending"
	RecordApproved RecordState = "approved"
	RecordRejected RecordState = "rejected"
	RecordExpired  RecordState = "expired"
)

// The record states under their first names, which device-sim's tests
// still use (they can go once device-sim moves to cmd/device-sim).
const (
	StatePending  = RecordPending
	StateApproved = RecordApproved
	StateRejected = RecordRejected
	StateExpired  = RecordExpired
)

// RequestState is where a request to a user's devices stands.
type RequestState string

// Request states.
const (
	RequestOpen     RequestState = "open"
	RequestAnswered RequestState = "answered"
	// RequestExpired: past its expiry without an answer.
	RequestExpired RequestState = "expired"
)

// Answer is a device's answer to a request: approved or rejected for an
// approval request, granted or refused for an access request.
type Answer string

// Answers.
const (
	AnswerApproved Answer = "approved"
	AnswerRejected Answer = "rejected"
	AnswerGranted  Answer = "granted"
	AnswerRefused  Answer = "refused"
)

// Multipart part names of an upload, in the order they must appear.
const (
	PartMetadata  = "metadata"
	PartPrivate   = "private"
	PartBody      = "body"
	PartStatement = "statement"
	PartSignature = "signature"
)

// Upload part limits.
const (
	MaxMetadataSize  = 16 << 10
	MaxPrivateSize   = 64 << 10
	MaxStatementSize = 16 << 10
	MaxSignatureSize = 16 << 10
)

// IDPattern is the form of every server id.
var IDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// FingerprintPattern is the form of a key fingerprint (v4: 40, v6: 64 hex digits).
var FingerprintPattern = regexp.MustCompile(`^(?:[0-9A-F]{40}|[0-9A-F]{64})$`)

// Problem is an RFC 9457 problem details body: what the server sends with
// an error status, and the error pkg/client returns for it (client.Error
// is this type). A response without a problem body becomes a Problem of
// its status alone.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// RecordID (an extension member) names the record an
	// idempotency-key-reused problem refers to.
	RecordID string `json:"record_id,omitempty"`
	// RequestID names the access request of an idempotency-key-reused
	// problem on POST /v1/records/{id}/access.
	RequestID string `json:"request_id,omitempty"`
}

// Error says what the server answered, for a client's error messages.
func (p *Problem) Error() string {
	msg := p.Title
	if msg == "" {
		msg = http.StatusText(p.Status)
	}
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return fmt.Sprintf("server: %s (HTTP %d)", msg, p.Status)
}

// Problem type URIs.
const (
	problemBase           = "https://keyholder.dev/problems/"
	ProblemBadRequest     = problemBase + "bad-request"
	ProblemInvalidJSON    = problemBase + "invalid-json"
	ProblemUnauthorized   = problemBase + "unauthorized"
	ProblemForbidden      = problemBase + "forbidden"
	ProblemNotFound       = problemBase + "not-found"
	ProblemMethod         = problemBase + "method-not-allowed"
	ProblemConflict       = problemBase + "conflict"
	ProblemTooLarge       = problemBase + "too-large"
	ProblemUnsupportedMT  = problemBase + "unsupported-media-type"
	ProblemInvalidMessage = problemBase + "invalid-message"
	ProblemWrongKeys      = problemBase + "wrong-recipients"
	ProblemBadStatement   = problemBase + "bad-statement"
	ProblemBadSignature   = problemBase + "bad-signature"
	ProblemExpired        = problemBase + "expired"
	ProblemRateLimited    = problemBase + "rate-limited"
	ProblemInternal       = problemBase + "internal"
	ProblemUnavailable    = problemBase + "unavailable"
	// ProblemAlreadyAnswered: a second answer to a request (409).
	ProblemAlreadyAnswered = problemBase + "already-answered"
	// ProblemInvalidKey: an uploaded public key is unacceptable (422).
	ProblemInvalidKey = problemBase + "invalid-key"
	// ProblemPreconditionFailed: If-Match did not match (412).
	ProblemPreconditionFailed = problemBase + "precondition-failed"
	// ProblemRangeNotSatisfiable: a Range outside the content (416).
	ProblemRangeNotSatisfiable = problemBase + "range-not-satisfiable"
	// ProblemAccessRefused: the user refused the caller's newest access
	// request for the record, and the caller holds no valid grant (403).
	ProblemAccessRefused = problemBase + "access-refused"
	// ProblemRequestTimeout: the request body did not arrive in time: a
	// JSON body not complete within the server's body timeout, or an
	// upload that sent nothing for its idle timeout (408).
	ProblemRequestTimeout = problemBase + "request-timeout"
	// ProblemIncompatibleKey: the caller's key cannot receive a record of
	// the record's profile (a v6 key for a compat record, a key that does
	// not advertise SEIPDv2 for a modern one), so no grant could be made
	// for it (422).
	ProblemIncompatibleKey = problemBase + "incompatible-key"
	// ProblemProfileNotAccepted: an upload sealed in a record profile the
	// deployment does not take (keyholderd serve --profiles) (422).
	ProblemProfileNotAccepted = problemBase + "profile-not-accepted"
	// ProblemInsufficientStorage: the server has no room to store what was
	// sent (a full disk or quota, for the blobs or the database) (507).
	ProblemInsufficientStorage = problemBase + "insufficient-storage"
	// ProblemIdempotencyKeyReused: the Idempotency-Key was used before by
	// the caller for another upload or access request, which the problem
	// names (record_id, and request_id for an access request) (409).
	ProblemIdempotencyKeyReused = problemBase + "idempotency-key-reused"
)

// problemStatus is the one HTTP status each problem type is sent with.
var problemStatus = map[string]int{
	ProblemBadRequest:           400,
	ProblemInvalidJSON:          400,
	ProblemUnauthorized:         401,
	ProblemForbidden:            403,
	ProblemAccessRefused:        403,
	ProblemNotFound:             404,
	ProblemMethod:               405,
	ProblemRequestTimeout:       408,
	ProblemConflict:             409,
	ProblemAlreadyAnswered:      409,
	ProblemExpired:              409,
	ProblemIdempotencyKeyReused: 409,
	ProblemPreconditionFailed:   412,
	ProblemTooLarge:             413,
	ProblemUnsupportedMT:        415,
	ProblemRangeNotSatisfiable:  416,
	ProblemInvalidMessage:       422,
	ProblemWrongKeys:            422,
	ProblemBadStatement:         422,
	ProblemBadSignature:         422,
	ProblemInvalidKey:           422,
	ProblemIncompatibleKey:      422,
	ProblemProfileNotAccepted:   422,
	ProblemRateLimited:          429,
	ProblemInternal:             500,
	ProblemUnavailable:          503,
	ProblemInsufficientStorage:  507,
}

// ProblemStatus returns the HTTP status that goes with a problem type, or 0
// for an unknown type. The server never sends a type with another status.
func ProblemStatus(typ string) int { return problemStatus[typ] }

// ProblemTypes returns every problem type URI the server uses.
func ProblemTypes() []string {
	out := make([]string, 0, len(problemStatus))
	for t := range problemStatus {
		out = append(out, t)
	}
	return out
}

// --- Authentication ---

type ChallengeRequest struct {
	Fingerprint string `json:"fingerprint"`
}

type ChallengeResponse struct {
	Nonce   string    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

type TokenRequest struct {
	Fingerprint string `json:"fingerprint"`
	Nonce       string `json:"nonce"`
	// Signature is the armored detached signature over the challenge
	// statement (statement.Challenge with Nonce and Fingerprint).
	Signature string `json:"signature"`
}

type TokenResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// --- Operator ---

type CreateUserRequest struct {
	Handle string `json:"handle"`
}

type EnrollmentCode struct {
	UserID      string    `json:"user_id"`
	Code        string    `json:"enrollment_code"`
	CodeExpires time.Time `json:"code_expires"`
}

type CreateUserResponse struct {
	ID          string    `json:"id"`
	Handle      string    `json:"handle"`
	Code        string    `json:"enrollment_code"`
	CodeExpires time.Time `json:"code_expires"`
}

type User struct {
	ID                  string    `json:"id"`
	Handle              string    `json:"handle"`
	Created             time.Time `json:"created"`
	RecoveryFingerprint string    `json:"recovery_fingerprint,omitempty"`
	Devices             int       `json:"devices"`
}

type CreatePartyRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

type Party struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	Created     time.Time `json:"created"`
}

type Device struct {
	ID          string     `json:"id"`
	UserID      string     `json:"user_id"`
	Fingerprint string     `json:"fingerprint"`
	Status      string     `json:"status"`
	PushKind    string     `json:"push_kind"`
	PushDead    bool       `json:"push_dead,omitempty"`
	Created     time.Time  `json:"created"`
	Revoked     *time.Time `json:"revoked,omitempty"`
}

// --- Device ---

// A ChainLink is one link of a user's key chain (see pkg/keychain): a
// keyholder-chain-link-v1 statement, the armored detached signature of the
// device that made it, and, for add-device and set-recovery, the armored
// public key the link adds.
type ChainLink struct {
	Statement string `json:"statement"`
	Signature string `json:"signature"`
	PublicKey string `json:"public_key,omitempty"`
}

// EnrollInfoRequest asks which user an enrollment code is for, without
// using it, so the first device can sign its chain's first link.
type EnrollInfoRequest struct {
	Code string `json:"code"`
}

type EnrollInfo struct {
	UserID string `json:"user_id"`
	Handle string `json:"handle"`
}

// EnrollRequest binds a user's first device key with an enrollment code:
// Link is the first link of the user's key chain, adding the key and
// signed by it.
type EnrollRequest struct {
	Code      string    `json:"code"`
	PublicKey string    `json:"public_key"`
	Link      ChainLink `json:"link"`
	PushKind  string    `json:"push_kind,omitempty"`  // "local" (default) or "fcm"
	PushToken string    `json:"push_token,omitempty"` // FCM registration token
}

// LinkRequestCreate asks the user's devices to add a new device: the new
// device sends its public key and shows keychain.Code of it; an existing
// device shows the same code and, once the user has compared them, signs
// the add-device link.
type LinkRequestCreate struct {
	// User is the user's id or handle.
	User      string `json:"user"`
	PublicKey string `json:"public_key"`
	PushKind  string `json:"push_kind,omitempty"`
	PushToken string `json:"push_token,omitempty"`
}

// LinkRequest is the state of a request to add a device. Its id is the
// only secret the new device needs to follow it.
type LinkRequest struct {
	ID          string    `json:"id"`
	UserID      string    `json:"user_id"`
	Fingerprint string    `json:"fingerprint"`
	Code        string    `json:"code"`
	State       string    `json:"state"` // open | approved | refused | expired
	DeviceID    string    `json:"device_id,omitempty"`
	Expires     time.Time `json:"expires"`
}

type EnrollResponse struct {
	DeviceID    string `json:"device_id"`
	UserID      string `json:"user_id"`
	Fingerprint string `json:"fingerprint"`
}

// RequestSummary is one open request in a device's list.
type RequestSummary struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"` // "approval", "access" or "device"
	RecordID string    `json:"record_id,omitempty"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
}

type RequestList struct {
	Requests []RequestSummary `json:"requests"`
	// NextCursor continues the list (see Page); empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// RequestDetail is everything a device needs to decide a request.
type RequestDetail struct {
	ID       string       `json:"id"`
	Kind     string       `json:"kind"`
	State    RequestState `json:"state"`
	RecordID string       `json:"record_id"`
	UserID   string       `json:"user_id"`
	Profile  string       `json:"profile"`
	Created  time.Time    `json:"created"`
	Expires  time.Time    `json:"expires"`

	SubmitterFingerprint string `json:"submitter_fingerprint"`
	SubmitterKey         string `json:"submitter_key"`
	SubmitterName        string `json:"submitter_name"`
	// Metadata is the public metadata JSON exactly as uploaded (its bytes
	// enter the metadata digest).
	Metadata string `json:"metadata"`
	// Private is the sealed private metadata message (base64), if any.
	Private          []byte `json:"private,omitempty"`
	CiphertextSHA256 string `json:"ciphertext_sha256"`
	CiphertextSize   int64  `json:"ciphertext_size"`
	// KeyPacket is this device's own PKESK of the record.
	KeyPacket []byte `json:"key_packet,omitempty"`
	// KeyPackets are all of the record's PKESKs in message order (their
	// SHA-256 is the statements' key-packets-sha256); KeyPacket is one of
	// them.
	KeyPackets          [][]byte `json:"key_packets,omitempty"`
	SubmissionStatement string   `json:"submission_statement"`
	SubmissionSignature string   `json:"submission_signature"`

	// Access requests only.
	RequesterFingerprint string     `json:"requester_fingerprint,omitempty"`
	RequesterKey         string     `json:"requester_key,omitempty"`
	RequesterName        string     `json:"requester_name,omitempty"`
	Purpose              string     `json:"purpose,omitempty"`
	GrantExpires         *time.Time `json:"grant_expires,omitempty"`
	ApprovalStatement    string     `json:"approval_statement,omitempty"`
	ApprovalSignature    string     `json:"approval_signature,omitempty"`
	ApprovalDevice       string     `json:"approval_device,omitempty"`

	// Device requests only: the key a new device asks to be added with.
	NewDeviceKey         string `json:"new_device_key,omitempty"`
	NewDeviceFingerprint string `json:"new_device_fingerprint,omitempty"`

	// Chain is the user's key chain as GET /v1/device/chain serves it,
	// read when the request was: the device checks the request against
	// it without a round trip of its own, and verifies it as it verifies
	// that route's (absent from servers before it; the device then asks).
	Chain *UserKeys `json:"chain,omitempty"`
}

// AnswerRequest approves or rejects a submission.
type AnswerRequest struct {
	Statement string `json:"statement"`
	Signature string `json:"signature"`
}

// GrantAnswer answers an access request with a new key packet.
type GrantAnswer struct {
	KeyPacket []byte `json:"key_packet"` // the PKESK to the requester (base64)
	Statement string `json:"statement"`
	Signature string `json:"signature"`
}

// RefuseAnswer refuses an access request.
type RefuseAnswer struct{}

// AnswerResponse reports the outcome of an answer.
type AnswerResponse struct {
	RequestID string       `json:"request_id"`
	State     RequestState `json:"state"` // RequestAnswered
	Answer    Answer       `json:"answer"`
	RecordID  string       `json:"record_id"`
	GrantID   string       `json:"grant_id,omitempty"`
}

// --- Party ---

// QueryIdempotencyKey is the query parameter of GET /v1/party/records that
// finds the caller's record uploaded with an Idempotency-Key.
const QueryIdempotencyKey = "idempotency_key"

// RecipientKey is one key a record for the user must be sealed to.
type RecipientKey struct {
	Role        string `json:"role"` // "device" or "recovery"
	DeviceID    string `json:"device_id,omitempty"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"`
}

// UserKeys is a user's key chain and the keys the server holds current.
// Clients seal to the keys the verified Chain makes current (pkg/keychain),
// never to Keys alone, which is the server's word.
type UserKeys struct {
	UserID string         `json:"user_id"`
	Chain  []ChainLink    `json:"chain"`
	Keys   []RecipientKey `json:"keys"`
}

// Metadata is the public metadata part of an upload. Its exact bytes are
// what the submission statement's metadata digest covers.
type Metadata struct {
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Purpose     string `json:"purpose,omitempty"`
}

// Record is a record as its submitter or a grantee sees it.
type Record struct {
	ID               string      `json:"id"`
	UserID           string      `json:"user_id"`
	State            RecordState `json:"state"`
	Profile          string      `json:"profile"`
	SubmitterID      string      `json:"submitter_id"`
	CiphertextSHA256 string      `json:"ciphertext_sha256"`
	CiphertextSize   int64       `json:"ciphertext_size"`
	Metadata         string      `json:"metadata"`
	MetadataSHA256   string      `json:"metadata_sha256"`
	KeyPacketsSHA256 string      `json:"key_packets_sha256"`
	Created          time.Time   `json:"created"`
	Decided          *time.Time  `json:"decided,omitempty"`
	// The device's approval (or rejection) statement and signature, and
	// the fingerprint of the device that signed it.
	DecisionStatement string `json:"decision_statement,omitempty"`
	DecisionSignature string `json:"decision_signature,omitempty"`
	DeviceFingerprint string `json:"device_fingerprint,omitempty"`
	// Submission statement and signature as uploaded.
	SubmissionStatement string `json:"submission_statement,omitempty"`
	SubmissionSignature string `json:"submission_signature,omitempty"`
}

type RecordList struct {
	Records []Record `json:"records"`
	// NextCursor continues the list (see Page); empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// AccessRequest asks the user's device to open a record for the caller.
type AccessRequest struct {
	Purpose string `json:"purpose"`
	// ExpiresIn is the grant lifetime asked for, in seconds (0: the server maximum).
	ExpiresIn int64 `json:"expires_in"`
}

type AccessResponse struct {
	RequestID    string    `json:"request_id"`
	RecordID     string    `json:"record_id"`
	Expires      time.Time `json:"expires"`
	GrantExpires time.Time `json:"grant_expires"`
}

// AccessStatus is where one of the caller's access requests stands.
type AccessStatus struct {
	RequestID string `json:"request_id"`
	RecordID  string `json:"record_id"`
	// State is "open", "answered" or "expired" (also an open request past
	// its expiry that the sweeper has not marked yet).
	State RequestState `json:"state"`
	// Answer is "granted" or "refused" once State is "answered".
	Answer Answer `json:"answer,omitempty"`
	// GrantID is the grant that answered the request, if granted.
	GrantID string    `json:"grant_id,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// GrantExpires is when the grant ends (granted), or the latest
	// expiry asked for (otherwise).
	GrantExpires *time.Time `json:"grant_expires,omitempty"`
	Answered     *time.Time `json:"answered,omitempty"`
}

// Grant is a grant as its grantee (or the device) sees it.
type Grant struct {
	ID                string     `json:"id"`
	RecordID          string     `json:"record_id"`
	UserID            string     `json:"user_id,omitempty"`
	GranteeID         string     `json:"grantee_id"`
	GranteeFP         string     `json:"grantee_fingerprint"`
	RequestID         string     `json:"request_id"`
	Purpose           string     `json:"purpose"`
	Expires           time.Time  `json:"expires"`
	Revoked           *time.Time `json:"revoked,omitempty"`
	Created           time.Time  `json:"created"`
	KeyPacket         []byte     `json:"key_packet,omitempty"`
	Statement         string     `json:"statement,omitempty"`
	Signature         string     `json:"signature,omitempty"`
	DeviceFingerprint string     `json:"device_fingerprint,omitempty"`
}

type GrantList struct {
	Grants []Grant `json:"grants"`
	// NextCursor continues the list (see Page); empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// UserList is the operator's list of users (GET /v1/admin/users).
type UserList struct {
	Users []User `json:"users"`
	// NextCursor continues the list (see Page); empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// PartyList is the operator's list of parties (GET /v1/admin/parties).
type PartyList struct {
	Parties []Party `json:"parties"`
	// NextCursor continues the list (see Page); empty on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Every list route (records, grants, requests, users, parties) is paged:
// the query parameter limit bounds a page (1 to MaxPageSize, default
// DefaultPageSize) and cursor, the next_cursor of the page before, starts
// the page after it. A page of a list keeps the list's order (newest first
// for records and grants, oldest first otherwise) and costs the same at
// any depth; rows added meanwhile do not shift the pages after (none is
// served twice or skipped; new rows of a newest-first list come before
// its first page).
const (
	QueryLimit  = "limit"
	QueryCursor = "cursor"
	// QuerySessionKeyID (64 lower-case hex digits) keeps, of a device's
	// record list (PathDeviceRecords), only the records approved with that
	// session key id: what a device asks before it approves a record, to
	// refuse a second record sealed with an approved record's session key.
	QuerySessionKeyID = "session_key_id"
	// DefaultPageSize is a page without limit: the 1,000 rows every list
	// returned before lists had pages.
	DefaultPageSize = 1000
	MaxPageSize     = 1000
)

// Page asks for one page of a list: at most Limit rows (0: the server's
// default) after Cursor (empty: from the start).
type Page struct {
	Limit  int
	Cursor string
}

// Query returns path with the page's query parameters.
func (p Page) Query(path string) string {
	v := url.Values{}
	if p.Limit > 0 {
		v.Set(QueryLimit, strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		v.Set(QueryCursor, p.Cursor)
	}
	if len(v) == 0 {
		return path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + v.Encode()
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string `json:"status"`
}

// A party's GET of a record (PathRecord) or of one of its access requests
// (PathPartyRequest) may wait for the device: with the query parameter
// wait, a whole number of seconds from 1 to MaxWaitSeconds, the server
// answers once the record is no longer pending (the request no longer
// open) or when the seconds have passed, whichever comes first, with the
// state it then has. A party learns of the user's decision as soon as it
// is made instead of polling for it.
const (
	QueryWait      = "wait"
	MaxWaitSeconds = 60
)
