-- On PostgreSQL, version 8 announces changes to tokens, devices and parties
-- for the replicas' token caches. SQLite has one keyholderd and no cache:
-- nothing to do, but the versions stay the same on both databases.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
