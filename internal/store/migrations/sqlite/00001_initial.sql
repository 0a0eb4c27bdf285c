-- The schema as gorm's AutoMigrate made it before versioning. IF NOT EXISTS
-- lets this version adopt a database AutoMigrate made (see Store.Migrate):
-- it creates only what such a database lacks and touches no row.

-- +goose Up
CREATE TABLE IF NOT EXISTS `users` (`id` text,`handle` text NOT NULL,`created_at` datetime,`recovery_key` blob,`recovery_fingerprint` text,`chain_epoch` integer NOT NULL DEFAULT 0,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_users_handle` ON `users`(`handle`);

CREATE TABLE IF NOT EXISTS `enrollment_codes` (`id` text,`user_id` text NOT NULL,`code_hash` text NOT NULL,`expires_at` datetime,`used_at` datetime,`created_at` datetime,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_enrollment_codes_code_hash` ON `enrollment_codes`(`code_hash`);
CREATE INDEX IF NOT EXISTS `idx_enrollment_codes_user_id` ON `enrollment_codes`(`user_id`);

CREATE TABLE IF NOT EXISTS `devices` (`id` text,`user_id` text NOT NULL,`fingerprint` text NOT NULL,`public_key` blob NOT NULL,`status` text NOT NULL,`push_kind` text,`push_token` text,`push_dead` numeric,`created_at` datetime,`revoked_at` datetime,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_devices_fingerprint` ON `devices`(`fingerprint`);
CREATE INDEX IF NOT EXISTS `idx_devices_user_id` ON `devices`(`user_id`);

CREATE TABLE IF NOT EXISTS `parties` (`id` text,`name` text NOT NULL,`fingerprint` text NOT NULL,`public_key` blob NOT NULL,`created_at` datetime,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_parties_fingerprint` ON `parties`(`fingerprint`);

CREATE TABLE IF NOT EXISTS `nonces` (`hash` text,`fingerprint` text NOT NULL,`expires_at` datetime,`used` numeric,PRIMARY KEY (`hash`));
CREATE INDEX IF NOT EXISTS `idx_nonces_expires_at` ON `nonces`(`expires_at`);

CREATE TABLE IF NOT EXISTS `tokens` (`hash` text,`subject_kind` text NOT NULL,`subject_id` text NOT NULL,`expires_at` datetime,`created_at` datetime,PRIMARY KEY (`hash`));
CREATE INDEX IF NOT EXISTS `idx_tokens_expires_at` ON `tokens`(`expires_at`);

CREATE TABLE IF NOT EXISTS `records` (`id` text,`user_id` text NOT NULL,`party_id` text NOT NULL,`state` text NOT NULL,`profile` text NOT NULL,`ciphertext_sha256` text NOT NULL,`size` integer,`blob_key` text,`metadata` blob,`private` blob,`metadata_sha256` text NOT NULL,`key_packets_sha256` text,`content_type` text,`declared_size` integer,`purpose` text,`submission_statement` blob,`submission_signature` blob,`idempotency_key` text,`decision_statement` blob,`decision_signature` blob,`decided_by` text,`decided_at` datetime,`created_at` datetime,`expires_at` datetime,PRIMARY KEY (`id`));
CREATE INDEX IF NOT EXISTS `idx_records_expires_at` ON `records`(`expires_at`);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_records_blob_key` ON `records`(`blob_key`);
CREATE INDEX IF NOT EXISTS `idx_records_state` ON `records`(`state`);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_records_idem` ON `records`(`party_id`,`idempotency_key`);
CREATE INDEX IF NOT EXISTS `idx_records_party_id` ON `records`(`party_id`);
CREATE INDEX IF NOT EXISTS `idx_records_user_id` ON `records`(`user_id`);

CREATE TABLE IF NOT EXISTS `record_key_packets` (`id` integer PRIMARY KEY AUTOINCREMENT,`record_id` text NOT NULL,`device_id` text,`recovery` numeric,`fingerprint` text NOT NULL,`packet` blob NOT NULL);
CREATE INDEX IF NOT EXISTS `idx_record_key_packets_device_id` ON `record_key_packets`(`device_id`);
CREATE INDEX IF NOT EXISTS `idx_record_key_packets_record_id` ON `record_key_packets`(`record_id`);

CREATE TABLE IF NOT EXISTS `requests` (`id` text,`kind` text NOT NULL,`record_id` text NOT NULL,`user_id` text NOT NULL,`party_id` text NOT NULL,`purpose` text,`grant_expires` datetime,`state` text NOT NULL,`answer` text,`answered_by` text,`expires_at` datetime,`created_at` datetime,`answered_at` datetime,`idempotency_key` text,PRIMARY KEY (`id`));
CREATE INDEX IF NOT EXISTS `idx_requests_expires_at` ON `requests`(`expires_at`);
CREATE INDEX IF NOT EXISTS `idx_requests_state` ON `requests`(`state`);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_requests_idem` ON `requests`(`party_id`,`idempotency_key`);
CREATE INDEX IF NOT EXISTS `idx_requests_party_id` ON `requests`(`party_id`);
CREATE INDEX IF NOT EXISTS `idx_requests_user_id` ON `requests`(`user_id`);
CREATE INDEX IF NOT EXISTS `idx_requests_record_id` ON `requests`(`record_id`);

CREATE TABLE IF NOT EXISTS `grants` (`id` text,`record_id` text NOT NULL,`party_id` text NOT NULL,`user_id` text NOT NULL,`request_id` text NOT NULL,`device_id` text NOT NULL,`key_packet` blob NOT NULL,`statement` blob NOT NULL,`signature` blob NOT NULL,`purpose` text,`expires_at` datetime,`revoked_at` datetime,`created_at` datetime,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_grants_request_id` ON `grants`(`request_id`);
CREATE INDEX IF NOT EXISTS `idx_grants_user_id` ON `grants`(`user_id`);
CREATE INDEX IF NOT EXISTS `idx_grants_party_id` ON `grants`(`party_id`);
CREATE INDEX IF NOT EXISTS `idx_grants_record_party` ON `grants`(`record_id`,`party_id`);
CREATE INDEX IF NOT EXISTS `idx_grants_record_id` ON `grants`(`record_id`);

CREATE TABLE IF NOT EXISTS `audit_events` (`id` integer PRIMARY KEY AUTOINCREMENT,`time` datetime,`actor_kind` text NOT NULL,`actor_id` text,`action` text NOT NULL,`object_kind` text,`object_id` text);

CREATE TABLE IF NOT EXISTS `log_entries` (`index` integer PRIMARY KEY AUTOINCREMENT,`kind` text NOT NULL,`leaf` blob NOT NULL,`time` datetime);

CREATE TABLE IF NOT EXISTS `chain_links` (`id` text,`user_id` text NOT NULL,`epoch` integer NOT NULL,`seq` integer NOT NULL,`statement` blob NOT NULL,`signature` blob NOT NULL,`public_key` blob,`created_at` datetime,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_chain_links_seq` ON `chain_links`(`user_id`,`epoch`,`seq`);

CREATE TABLE IF NOT EXISTS `pending_devices` (`id` text,`user_id` text NOT NULL,`fingerprint` text NOT NULL,`public_key` blob NOT NULL,`push_kind` text,`push_token` text,`state` text NOT NULL,`device_id` text,`expires_at` datetime,`created_at` datetime,PRIMARY KEY (`id`));
CREATE INDEX IF NOT EXISTS `idx_pending_devices_expires_at` ON `pending_devices`(`expires_at`);
CREATE INDEX IF NOT EXISTS `idx_pending_devices_state` ON `pending_devices`(`state`);
CREATE INDEX IF NOT EXISTS `idx_pending_devices_fingerprint` ON `pending_devices`(`fingerprint`);
CREATE INDEX IF NOT EXISTS `idx_pending_devices_user_id` ON `pending_devices`(`user_id`);

-- +goose Down
DROP TABLE IF EXISTS `pending_devices`;
DROP TABLE IF EXISTS `chain_links`;
DROP TABLE IF EXISTS `log_entries`;
DROP TABLE IF EXISTS `audit_events`;
DROP TABLE IF EXISTS `grants`;
DROP TABLE IF EXISTS `requests`;
DROP TABLE IF EXISTS `record_key_packets`;
DROP TABLE IF EXISTS `records`;
DROP TABLE IF EXISTS `tokens`;
DROP TABLE IF EXISTS `nonces`;
DROP TABLE IF EXISTS `parties`;
DROP TABLE IF EXISTS `devices`;
DROP TABLE IF EXISTS `enrollment_codes`;
DROP TABLE IF EXISTS `users`;
