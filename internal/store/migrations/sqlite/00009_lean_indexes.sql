-- Fewer indexes to write, and none that can pass for the primary key.
--
-- Dropped: each index whose columns lead a composite index that stays
-- (records, requests and grants by user or party; grants by record), and
-- the indexes on state alone. A record's insert, and each change of its
-- state, wrote every one of them.
--
-- The sweeper's expiry indexes keep only what it looks for, the pending
-- records and the open requests: an expiry index over every row made each
-- sweep read all the records and requests that ever expired or were
-- decided.

-- +goose Up
DROP INDEX idx_records_state;
DROP INDEX idx_records_party_id;
DROP INDEX idx_records_user_id;
DROP INDEX idx_records_expires_at;
CREATE INDEX `idx_records_pending_expiry` ON `records`(`expires_at`) WHERE state = 'pending';
DROP INDEX idx_requests_state;
DROP INDEX idx_requests_party_id;
DROP INDEX idx_requests_user_id;
DROP INDEX idx_requests_expires_at;
CREATE INDEX `idx_requests_open_expiry` ON `requests`(`expires_at`) WHERE state = 'open';
DROP INDEX idx_grants_party_id;
DROP INDEX idx_grants_record_id;
DROP INDEX idx_grants_user_id;

-- +goose Down
CREATE INDEX `idx_grants_user_id` ON `grants`(`user_id`);
CREATE INDEX `idx_grants_record_id` ON `grants`(`record_id`);
CREATE INDEX `idx_grants_party_id` ON `grants`(`party_id`);
DROP INDEX idx_requests_open_expiry;
CREATE INDEX `idx_requests_expires_at` ON `requests`(`expires_at`);
CREATE INDEX `idx_requests_user_id` ON `requests`(`user_id`);
CREATE INDEX `idx_requests_party_id` ON `requests`(`party_id`);
CREATE INDEX `idx_requests_state` ON `requests`(`state`);
DROP INDEX idx_records_pending_expiry;
CREATE INDEX `idx_records_expires_at` ON `records`(`expires_at`);
CREATE INDEX `idx_records_user_id` ON `records`(`user_id`);
CREATE INDEX `idx_records_party_id` ON `records`(`party_id`);
CREATE INDEX `idx_records_state` ON `records`(`state`);
