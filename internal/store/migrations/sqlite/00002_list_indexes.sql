-- Indexes for the hot reads: a device's open requests (by user, state and
-- expiry), and the newest-first lists of a user's and of a party's records
-- and grants, which without them sort all of the user's or party's rows to
-- return the first page.

-- +goose Up
CREATE INDEX idx_requests_user_state ON `requests`(`user_id`,`state`,`expires_at`);
CREATE INDEX idx_records_user_created ON `records`(`user_id`,`created_at`);
CREATE INDEX idx_records_party_created ON `records`(`party_id`,`created_at`);
CREATE INDEX idx_grants_user_created ON `grants`(`user_id`,`created_at`);
CREATE INDEX idx_grants_party_created ON `grants`(`party_id`,`created_at`);

-- +goose Down
DROP INDEX idx_grants_party_created;
DROP INDEX idx_grants_user_created;
DROP INDEX idx_records_party_created;
DROP INDEX idx_records_user_created;
DROP INDEX idx_requests_user_state;
