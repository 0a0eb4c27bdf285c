-- The metrics count the pending records on the sweeper's index of their
-- expiry, which holds the pending records alone (store.PendingRecords),
-- instead of counting every record by state, which read an index of every
-- record ever stored on each scrape. The index on records' state served
-- nothing else, and an upload and each decision wrote it.

-- +goose Up
DROP INDEX idx_records_state;

-- +goose Down
CREATE INDEX `idx_records_state` ON `records`(`state`);
