-- Fewer indexes to write, and none a stale plan can take for another.
--
-- Dropped: each index whose columns lead a composite index that stays
-- (records, requests and grants by user or party; grants by record), and
-- the index on requests' state. A row's insert, and each change of its
-- state, wrote every one of them. Records keep theirs: the metrics count
-- records by state on every scrape, which without it reads the table. The
-- writes that update a row under a guard on its state find it by primary
-- key alone whatever the indexes (store.keyed).
--
-- The sweeper's expiry indexes are keyed by the expiry of what it looks
-- for, the pending records and the open requests (NULL for the others): an
-- expiry index over every row made each sweep read all the records and
-- requests that ever expired or were decided. They are expression indexes,
-- not partial ones (WHERE state = 'open'), because the planner took a
-- partial index, when its statistics predated a burst of open requests,
-- for queries it does not serve (a device's open requests), and read the
-- whole burst; no other query names the expression.
--
-- The new indexes are built before the old ones are dropped: a DROP INDEX
-- locks its table until the migration commits.

-- +goose Up
CREATE INDEX idx_records_pending_expiry ON `records`((CASE WHEN state = 'pending' THEN expires_at END));
CREATE INDEX idx_requests_open_expiry ON `requests`((CASE WHEN state = 'open' THEN expires_at END));
DROP INDEX idx_records_party_id;
DROP INDEX idx_records_user_id;
DROP INDEX idx_records_expires_at;
DROP INDEX idx_requests_state;
DROP INDEX idx_requests_party_id;
DROP INDEX idx_requests_user_id;
DROP INDEX idx_requests_expires_at;
DROP INDEX idx_grants_party_id;
DROP INDEX idx_grants_record_id;
DROP INDEX idx_grants_user_id;

-- +goose Down
CREATE INDEX `idx_grants_user_id` ON `grants`(`user_id`);
CREATE INDEX `idx_grants_record_id` ON `grants`(`record_id`);
CREATE INDEX `idx_grants_party_id` ON `grants`(`party_id`);
CREATE INDEX `idx_requests_expires_at` ON `requests`(`expires_at`);
CREATE INDEX `idx_requests_user_id` ON `requests`(`user_id`);
CREATE INDEX `idx_requests_party_id` ON `requests`(`party_id`);
CREATE INDEX `idx_requests_state` ON `requests`(`state`);
CREATE INDEX `idx_records_expires_at` ON `records`(`expires_at`);
CREATE INDEX `idx_records_user_id` ON `records`(`user_id`);
CREATE INDEX `idx_records_party_id` ON `records`(`party_id`);
DROP INDEX idx_requests_open_expiry;
DROP INDEX idx_records_pending_expiry;
