package store

import (
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// Record states: rows keep a record's state as the API shows it. The
// columns are plain strings, which device-sim's and the benches' tests
// read as such.
const (
	StatePending  = string(api.RecordPending)
	StateApproved = string(api.RecordApproved)
	StateRejected = string(api.RecordRejected)
	StateExpired  = string(api.RecordExpired)
)

// Request kinds and states.
const (
	KindApproval = "approval"
	KindAccess   = "access"
	// KindDevice asks the user's devices to add a new device (a link
	// request); it has no record.
	KindDevice = "device"

	RequestOpen     = string(api.RequestOpen)
	RequestAnswered = string(api.RequestAnswered)
	RequestExpired  = string(api.RequestExpired)

	AnswerApproved = string(api.AnswerApproved)
	AnswerRejected = string(api.AnswerRejected)
	AnswerGranted  = string(api.AnswerGranted)
	AnswerRefused  = string(api.AnswerRefused)
)

// Device states.
const (
	DeviceActive  = "active"
	DeviceRevoked = "revoked"
)

// Link request (pending device) states.
const (
	LinkOpen     = "open"
	LinkApproved = "approved"
	LinkRefused  = "refused"
	LinkExpired  = "expired"
)

// Log entry kinds (design invariant 5: these join the Merkle log).
const (
	// LogChainLink: a link of a user's key chain (the leaf is the link
	// statement, which its signer's device signed).
	LogChainLink = "chain-link"
	// LogChainReset: the operator ended a user's key chain (the leaf is
	// a statement.ChainReset); the next chain starts again at seq 0.
	LogChainReset = "chain-reset"
	LogApproval   = "approval"
	LogRejection  = "rejection"
	LogGrant      = "grant"
	LogRevocation = "revocation"
	// LogMap: the user map's root after the leaves before it, the last
	// leaf of every signed tree (written by the sequencer only).
	LogMap = "map"
)

// Actor kinds.
const (
	ActorAdmin  = "admin"
	ActorDevice = "device"
	ActorParty  = "party"
	ActorSystem = "system"
	ActorAnon   = "anonymous"
)

// The tables are made by the SQL files in migrations/ (see migrate.go); the
// gorm tags below describe their columns and make nothing. A change of a
// model goes with a new migration for both databases.

// User is a person whose records the server keeps.
type User struct {
	ID        string    `gorm:"primaryKey;size:32;index:idx_users_created,priority:2"`
	Handle    string    `gorm:"uniqueIndex;size:128;not null"`
	CreatedAt time.Time `gorm:"index:idx_users_created,priority:1"`
	// RecoveryKey is the armored public recovery key, if the user has one.
	// Like the user's Device rows it mirrors the user's key chain: it
	// changes only with a set-recovery or remove-recovery link (or a reset).
	RecoveryKey         []byte
	RecoveryFingerprint string `gorm:"size:64"`
	// ChainEpoch counts the operator's resets of the user's key chain: the
	// current chain is the links of this epoch.
	ChainEpoch int `gorm:"not null;default:0"`
}

// ChainLink is one link of a user's key chain (pkg/keychain), stored as
// the device sent it. The links of one epoch, by Seq, are the chain.
type ChainLink struct {
	ID     string `gorm:"primaryKey;size:32"`
	UserID string `gorm:"size:32;not null;uniqueIndex:idx_chain_links_seq,priority:1"`
	Epoch  int    `gorm:"not null;uniqueIndex:idx_chain_links_seq,priority:2"`
	Seq    int64  `gorm:"not null;uniqueIndex:idx_chain_links_seq,priority:3"`
	// Statement is the keyholder-chain-link-v1 statement, Signature the
	// signer's armored detached signature over it.
	Statement []byte `gorm:"not null"`
	Signature []byte `gorm:"not null"`
	// PublicKey is the armored key the link adds (add-device,
	// set-recovery); empty otherwise.
	PublicKey []byte
	CreatedAt time.Time
}

// PendingDevice is a link request: a new device's key waiting for one of
// the user's devices to sign it into the chain. Its ID is the id of the
// Request (kind device) the user's devices answer, and the only secret
// the new device needs to follow it.
type PendingDevice struct {
	ID          string `gorm:"primaryKey;size:32"`
	UserID      string `gorm:"size:32;index;not null"`
	Fingerprint string `gorm:"size:64;index;not null"`
	PublicKey   []byte `gorm:"not null"`
	PushKind    string `gorm:"size:16"`
	PushToken   string `gorm:"size:4096"`
	State       string `gorm:"size:16;index;not null"` // LinkOpen, LinkApproved, LinkRefused, LinkExpired
	// DeviceID is the device created when the request was approved.
	DeviceID  string    `gorm:"size:32"`
	ExpiresAt time.Time `gorm:"index"`
	CreatedAt time.Time
}

// EnrollmentCode is a one-time code that binds a device to a user.
type EnrollmentCode struct {
	ID        string `gorm:"primaryKey;size:32"`
	UserID    string `gorm:"size:32;index;not null"`
	CodeHash  string `gorm:"uniqueIndex;size:64;not null"`
	ExpiresAt time.Time
	UsedAt    *time.Time
	CreatedAt time.Time
}

// Device is a user's phone: its OpenPGP public key and push target.
type Device struct {
	ID          string `gorm:"primaryKey;size:32"`
	UserID      string `gorm:"size:32;index;not null"`
	Fingerprint string `gorm:"uniqueIndex;size:64;not null"`
	PublicKey   []byte `gorm:"not null"`
	Status      string `gorm:"size:16;not null"`
	PushKind    string `gorm:"size:16"`
	PushToken   string `gorm:"size:4096"`
	PushDead    bool
	CreatedAt   time.Time
	RevokedAt   *time.Time
}

// Party is a third party that submits and reads records.
type Party struct {
	ID          string    `gorm:"primaryKey;size:32;index:idx_parties_created,priority:2"`
	Name        string    `gorm:"size:256;not null"`
	Fingerprint string    `gorm:"uniqueIndex;size:64;not null"`
	PublicKey   []byte    `gorm:"not null"`
	CreatedAt   time.Time `gorm:"index:idx_parties_created,priority:1"`
}

// Nonce is an authentication challenge. Only its SHA-256 is stored.
type Nonce struct {
	Hash        string    `gorm:"primaryKey;size:64"`
	Fingerprint string    `gorm:"size:64;not null"`
	ExpiresAt   time.Time `gorm:"index"`
	Used        bool
}

// Token is a bearer token. Only its SHA-256 is stored.
type Token struct {
	Hash        string    `gorm:"primaryKey;size:64"`
	SubjectKind string    `gorm:"size:16;not null"` // device | party
	SubjectID   string    `gorm:"size:32;not null"`
	ExpiresAt   time.Time `gorm:"index"`
	CreatedAt   time.Time
}

// Record is one stored ciphertext and its approval state.
type Record struct {
	ID      string `gorm:"primaryKey;size:32"`
	UserID  string `gorm:"size:32;not null"`
	PartyID string `gorm:"size:32;uniqueIndex:idx_records_idem,priority:1;not null"`
	State   string `gorm:"size:16;not null"` // an api.RecordState
	Profile string `gorm:"size:16;not null"`
	// CiphertextSHA256 (hex) and Size identify the encrypted data packet.
	CiphertextSHA256 string `gorm:"size:64;not null"`
	Size             int64
	// BlobKey is set while the ciphertext is stored; nil once deleted.
	BlobKey *string `gorm:"uniqueIndex;size:64"`
	// Metadata is the public metadata JSON exactly as uploaded; Private the
	// sealed private metadata message (may be empty).
	Metadata       []byte
	Private        []byte
	MetadataSHA256 string `gorm:"size:64;not null"`
	// KeyPacketsSHA256 (hex) is envelope.KeyPacketsDigest of the message's
	// key packets, as the submission statement binds it.
	KeyPacketsSHA256 string `gorm:"size:64"`
	ContentType      string `gorm:"size:256"`
	DeclaredSize     int64
	Purpose          string `gorm:"size:1024"`
	// Submission statement and the party's signature over it.
	SubmissionStatement []byte
	SubmissionSignature []byte
	// IdempotencyKey is the party's Idempotency-Key header, if any.
	IdempotencyKey *string `gorm:"size:255;uniqueIndex:idx_records_idem,priority:2"`
	// Decision: approval or rejection statement signed by a device.
	DecisionStatement []byte
	DecisionSignature []byte
	DecidedBy         string `gorm:"size:32"` // device id
	DecidedAt         *time.Time
	CreatedAt         time.Time
	ExpiresAt         time.Time // end of pending life
}

// ApprovedSessionKey is an approved record's session key id (hex), as
// its approval states it: a device looks up by it whether another record
// of its user was approved with the same session key.
type ApprovedSessionKey struct {
	UserID       string `gorm:"primaryKey;size:32"`
	SessionKeyID string `gorm:"primaryKey;size:64"`
	RecordID     string `gorm:"primaryKey;size:32"`
}

// InlineCiphertext is the data packet of a small record, kept in the
// database instead of a blob file (the server's Config.InlineMax says up
// to which size). The record's BlobKey is set all the same: it names the
// ciphertext, and its unique index refuses a second record of the same
// bytes wherever they are kept. It goes with the record's key packets
// when the record is rejected or expires.
type InlineCiphertext struct {
	RecordID string `gorm:"primaryKey;size:32"`
	Data     []byte `gorm:"not null"`
}

// RecordKeyPacket is one PKESK of a record, with the key it is addressed to.
// A record's packets are inserted in message order, so their ids give that
// order.
type RecordKeyPacket struct {
	ID          uint   `gorm:"primaryKey"`
	RecordID    string `gorm:"size:32;not null;index:idx_record_key_packets_record_device,priority:1"`
	DeviceID    string `gorm:"size:32;index;index:idx_record_key_packets_record_device,priority:2"` // empty for the recovery key
	Recovery    bool
	Fingerprint string `gorm:"size:64;not null"`
	Packet      []byte `gorm:"not null"`
}

// Request is a question for the user's device.
type Request struct {
	ID   string `gorm:"primaryKey;size:32"`
	Kind string `gorm:"size:16;not null"`
	// RecordID is empty for a device request (KindDevice).
	RecordID string `gorm:"size:32;index;not null"`
	UserID   string `gorm:"size:32;not null"`
	// PartyID is the submitter (approval) or the requester (access);
	// empty for a device request.
	PartyID string `gorm:"size:32;uniqueIndex:idx_requests_idem,priority:1;not null"`
	Purpose string `gorm:"size:1024"`
	// GrantExpires is the latest expiry an access request asks for.
	GrantExpires *time.Time
	State        string `gorm:"size:16;not null"` // an api.RequestState
	Answer       string `gorm:"size:16"`          // an api.Answer
	AnsweredBy   string `gorm:"size:32"`
	ExpiresAt    time.Time
	CreatedAt    time.Time
	AnsweredAt   *time.Time
	// IdempotencyKey is the requester's Idempotency-Key of an access
	// request, if any.
	IdempotencyKey *string `gorm:"size:255;uniqueIndex:idx_requests_idem,priority:2"`
}

// Grant opens one record for one party. A party's grant on a record is
// looked up by both (its record, grant and content routes):
// idx_grants_record_party.
type Grant struct {
	ID        string `gorm:"primaryKey;size:32"`
	RecordID  string `gorm:"size:32;index:idx_grants_record_party,priority:1;not null"`
	PartyID   string `gorm:"size:32;index:idx_grants_record_party,priority:2;not null"`
	UserID    string `gorm:"size:32;not null"`
	RequestID string `gorm:"size:32;uniqueIndex;not null"`
	DeviceID  string `gorm:"size:32;not null"`
	KeyPacket []byte `gorm:"not null"`
	Statement []byte `gorm:"not null"`
	Signature []byte `gorm:"not null"`
	Purpose   string `gorm:"size:1024"`
	ExpiresAt time.Time
	RevokedAt *time.Time
	CreatedAt time.Time
}

// AuditEvent records who changed what, written with the change.
type AuditEvent struct {
	ID         uint64 `gorm:"primaryKey;autoIncrement"`
	Time       time.Time
	ActorKind  string `gorm:"size:16;not null"`
	ActorID    string `gorm:"size:64"`
	Action     string `gorm:"size:64;not null"`
	ObjectKind string `gorm:"size:32"`
	ObjectID   string `gorm:"size:64"`
}

// LogEntry is a leaf of the transparency log (the Merkle tree over these
// rows comes with the log issue).
type LogEntry struct {
	Index uint64 `gorm:"primaryKey;autoIncrement"`
	Kind  string `gorm:"size:32;not null"`
	Leaf  []byte `gorm:"not null"`
	Time  time.Time
	// Seq is the leaf's position in the Merkle log, assigned by the
	// sequencer (internal/translog) after the entry's transaction
	// committed: Index follows insertion, which on PostgreSQL is not
	// commit order and leaves gaps on rollback; Seq has neither.
	Seq *int64 `gorm:"uniqueIndex;index:idx_log_entries_history,priority:3"`
	// UserID and History place the leaf in the user map (empty: in no
	// user's history); set with Seq.
	UserID  string `gorm:"size:32;index:idx_log_entries_history,priority:1;index:idx_log_entries_hist_pos,priority:1"`
	History string `gorm:"size:16;index:idx_log_entries_history,priority:2;index:idx_log_entries_hist_pos,priority:2"`
	// LeafHash is the RFC 6962 record hash, for inclusion proofs by hash.
	LeafHash []byte `gorm:"index"`
	// HistPos is the leaf's position in its user history (0 for the
	// first), so that a history's length and a page of it are index
	// lookups, whatever the history's length (schema version 5).
	HistPos *int64 `gorm:"index:idx_log_entries_hist_pos,priority:3"`
}

// allModels is every table, in migration order.
func allModels() []any {
	return []any{&User{}, &EnrollmentCode{}, &Device{}, &Party{}, &Nonce{}, &Token{},
		&Record{}, &RecordKeyPacket{}, &Request{}, &Grant{}, &AuditEvent{}, &LogEntry{},
		&ChainLink{}, &PendingDevice{},
		&LogHash{}, &LogCheckpoint{}, &LogMapNode{}, &LogMapValue{}, &InlineCiphertext{}, &ApprovedSessionKey{}}
}
