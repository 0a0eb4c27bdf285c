-- The schema as gorm's AutoMigrate made it before versioning. IF NOT EXISTS
-- lets this version adopt a database AutoMigrate made (see Store.Migrate):
-- it creates only what such a database lacks and touches no row.

-- +goose Up
CREATE TABLE IF NOT EXISTS users (
    id character varying(32) NOT NULL,
    handle character varying(128) NOT NULL,
    created_at timestamp with time zone,
    recovery_key bytea,
    recovery_fingerprint character varying(64),
    chain_epoch bigint DEFAULT 0 NOT NULL,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_handle ON users (handle);

CREATE TABLE IF NOT EXISTS enrollment_codes (
    id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    code_hash character varying(64) NOT NULL,
    expires_at timestamp with time zone,
    used_at timestamp with time zone,
    created_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_enrollment_codes_code_hash ON enrollment_codes (code_hash);
CREATE INDEX IF NOT EXISTS idx_enrollment_codes_user_id ON enrollment_codes (user_id);

CREATE TABLE IF NOT EXISTS devices (
    id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    fingerprint character varying(64) NOT NULL,
    public_key bytea NOT NULL,
    status character varying(16) NOT NULL,
    push_kind character varying(16),
    push_token character varying(4096),
    push_dead boolean,
    created_at timestamp with time zone,
    revoked_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_devices_fingerprint ON devices (fingerprint);
CREATE INDEX IF NOT EXISTS idx_devices_user_id ON devices (user_id);

CREATE TABLE IF NOT EXISTS parties (
    id character varying(32) NOT NULL,
    name character varying(256) NOT NULL,
    fingerprint character varying(64) NOT NULL,
    public_key bytea NOT NULL,
    created_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_parties_fingerprint ON parties (fingerprint);

CREATE TABLE IF NOT EXISTS nonces (
    hash character varying(64) NOT NULL,
    fingerprint character varying(64) NOT NULL,
    expires_at timestamp with time zone,
    used boolean,
    PRIMARY KEY (hash)
);
CREATE INDEX IF NOT EXISTS idx_nonces_expires_at ON nonces (expires_at);

CREATE TABLE IF NOT EXISTS tokens (
    hash character varying(64) NOT NULL,
    subject_kind character varying(16) NOT NULL,
    subject_id character varying(32) NOT NULL,
    expires_at timestamp with time zone,
    created_at timestamp with time zone,
    PRIMARY KEY (hash)
);
CREATE INDEX IF NOT EXISTS idx_tokens_expires_at ON tokens (expires_at);

CREATE TABLE IF NOT EXISTS records (
    id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    party_id character varying(32) NOT NULL,
    state character varying(16) NOT NULL,
    profile character varying(16) NOT NULL,
    ciphertext_sha256 character varying(64) NOT NULL,
    size bigint,
    blob_key character varying(64),
    metadata bytea,
    private bytea,
    metadata_sha256 character varying(64) NOT NULL,
    key_packets_sha256 character varying(64),
    content_type character varying(256),
    declared_size bigint,
    purpose character varying(1024),
    submission_statement bytea,
    submission_signature bytea,
    idempotency_key character varying(255),
    decision_statement bytea,
    decision_signature bytea,
    decided_by character varying(32),
    decided_at timestamp with time zone,
    created_at timestamp with time zone,
    expires_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_records_blob_key ON records (blob_key);
CREATE INDEX IF NOT EXISTS idx_records_expires_at ON records (expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS idx_records_idem ON records (party_id, idempotency_key);
CREATE INDEX IF NOT EXISTS idx_records_party_id ON records (party_id);
CREATE INDEX IF NOT EXISTS idx_records_state ON records (state);
CREATE INDEX IF NOT EXISTS idx_records_user_id ON records (user_id);

CREATE TABLE IF NOT EXISTS record_key_packets (
    id bigserial NOT NULL,
    record_id character varying(32) NOT NULL,
    device_id character varying(32),
    recovery boolean,
    fingerprint character varying(64) NOT NULL,
    packet bytea NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_record_key_packets_device_id ON record_key_packets (device_id);
CREATE INDEX IF NOT EXISTS idx_record_key_packets_record_id ON record_key_packets (record_id);

CREATE TABLE IF NOT EXISTS requests (
    id character varying(32) NOT NULL,
    kind character varying(16) NOT NULL,
    record_id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    party_id character varying(32) NOT NULL,
    purpose character varying(1024),
    grant_expires timestamp with time zone,
    state character varying(16) NOT NULL,
    answer character varying(16),
    answered_by character varying(32),
    expires_at timestamp with time zone,
    created_at timestamp with time zone,
    answered_at timestamp with time zone,
    idempotency_key character varying(255),
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_requests_expires_at ON requests (expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS idx_requests_idem ON requests (party_id, idempotency_key);
CREATE INDEX IF NOT EXISTS idx_requests_party_id ON requests (party_id);
CREATE INDEX IF NOT EXISTS idx_requests_record_id ON requests (record_id);
CREATE INDEX IF NOT EXISTS idx_requests_state ON requests (state);
CREATE INDEX IF NOT EXISTS idx_requests_user_id ON requests (user_id);

CREATE TABLE IF NOT EXISTS grants (
    id character varying(32) NOT NULL,
    record_id character varying(32) NOT NULL,
    party_id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    request_id character varying(32) NOT NULL,
    device_id character varying(32) NOT NULL,
    key_packet bytea NOT NULL,
    statement bytea NOT NULL,
    signature bytea NOT NULL,
    purpose character varying(1024),
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    created_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_grants_party_id ON grants (party_id);
CREATE INDEX IF NOT EXISTS idx_grants_record_id ON grants (record_id);
CREATE INDEX IF NOT EXISTS idx_grants_record_party ON grants (record_id, party_id);
CREATE UNIQUE INDEX IF NOT EXISTS idx_grants_request_id ON grants (request_id);
CREATE INDEX IF NOT EXISTS idx_grants_user_id ON grants (user_id);

CREATE TABLE IF NOT EXISTS audit_events (
    id bigserial NOT NULL,
    "time" timestamp with time zone,
    actor_kind character varying(16) NOT NULL,
    actor_id character varying(64),
    action character varying(64) NOT NULL,
    object_kind character varying(32),
    object_id character varying(64),
    PRIMARY KEY (id)
);

CREATE TABLE IF NOT EXISTS log_entries (
    index bigserial NOT NULL,
    kind character varying(32) NOT NULL,
    leaf bytea NOT NULL,
    "time" timestamp with time zone,
    PRIMARY KEY (index)
);

CREATE TABLE IF NOT EXISTS chain_links (
    id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    epoch bigint NOT NULL,
    seq bigint NOT NULL,
    statement bytea NOT NULL,
    signature bytea NOT NULL,
    public_key bytea,
    created_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_chain_links_seq ON chain_links (user_id, epoch, seq);

CREATE TABLE IF NOT EXISTS pending_devices (
    id character varying(32) NOT NULL,
    user_id character varying(32) NOT NULL,
    fingerprint character varying(64) NOT NULL,
    public_key bytea NOT NULL,
    push_kind character varying(16),
    push_token character varying(4096),
    state character varying(16) NOT NULL,
    device_id character varying(32),
    expires_at timestamp with time zone,
    created_at timestamp with time zone,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_pending_devices_expires_at ON pending_devices (expires_at);
CREATE INDEX IF NOT EXISTS idx_pending_devices_fingerprint ON pending_devices (fingerprint);
CREATE INDEX IF NOT EXISTS idx_pending_devices_state ON pending_devices (state);
CREATE INDEX IF NOT EXISTS idx_pending_devices_user_id ON pending_devices (user_id);

-- +goose Down
DROP TABLE IF EXISTS pending_devices;
DROP TABLE IF EXISTS chain_links;
DROP TABLE IF EXISTS log_entries;
DROP TABLE IF EXISTS audit_events;
DROP TABLE IF EXISTS grants;
DROP TABLE IF EXISTS requests;
DROP TABLE IF EXISTS record_key_packets;
DROP TABLE IF EXISTS records;
DROP TABLE IF EXISTS tokens;
DROP TABLE IF EXISTS nonces;
DROP TABLE IF EXISTS parties;
DROP TABLE IF EXISTS devices;
DROP TABLE IF EXISTS enrollment_codes;
DROP TABLE IF EXISTS users;
