-- The transparency log (internal/translog): each entry's position in the
-- Merkle tree (seq, given by the sequencer), its place in the user map
-- (user_id, history) and its RFC 6962 record hash; the tree's stored
-- hashes, the signed checkpoints, and the user map's versioned nodes and
-- current values.

-- +goose Up
ALTER TABLE log_entries ADD COLUMN seq bigint;
ALTER TABLE log_entries ADD COLUMN user_id character varying(32);
ALTER TABLE log_entries ADD COLUMN history character varying(16);
ALTER TABLE log_entries ADD COLUMN leaf_hash bytea;
CREATE UNIQUE INDEX idx_log_entries_seq ON log_entries USING btree (seq);
CREATE INDEX idx_log_entries_history ON log_entries USING btree (user_id, history, seq);
CREATE INDEX idx_log_entries_leaf_hash ON log_entries USING btree (leaf_hash);
CREATE TABLE log_hashes (
    id bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (id)
);
CREATE TABLE log_checkpoints (
    size bigint NOT NULL,
    note bytea NOT NULL,
    published boolean NOT NULL,
    PRIMARY KEY (size)
);
CREATE INDEX idx_log_checkpoints_published ON log_checkpoints USING btree (published);
CREATE TABLE log_map_nodes (
    label_key bytea NOT NULL,
    version bigint NOT NULL,
    node bytea NOT NULL,
    PRIMARY KEY (label_key, version)
);
CREATE TABLE log_map_values (
    label bytea NOT NULL,
    count bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (label)
);

-- +goose Down
DROP TABLE log_map_values;
DROP TABLE log_map_nodes;
DROP TABLE log_checkpoints;
DROP TABLE log_hashes;
DROP INDEX idx_log_entries_leaf_hash;
DROP INDEX idx_log_entries_history;
DROP INDEX idx_log_entries_seq;
ALTER TABLE log_entries DROP COLUMN leaf_hash;
ALTER TABLE log_entries DROP COLUMN history;
ALTER TABLE log_entries DROP COLUMN user_id;
ALTER TABLE log_entries DROP COLUMN seq;
