-- The transparency log (internal/translog): each entry's position in the
-- Merkle tree (seq, given by the sequencer), its place in the user map
-- (user_id, history) and its RFC 6962 record hash; the tree's stored
-- hashes, the signed checkpoints, and the user map's versioned nodes and
-- current values.

-- +goose Up
ALTER TABLE `log_entries` ADD COLUMN `seq` integer;
ALTER TABLE `log_entries` ADD COLUMN `user_id` text;
ALTER TABLE `log_entries` ADD COLUMN `history` text;
ALTER TABLE `log_entries` ADD COLUMN `leaf_hash` blob;
CREATE UNIQUE INDEX `idx_log_entries_seq` ON `log_entries`(`seq`);
CREATE INDEX `idx_log_entries_history` ON `log_entries`(`user_id`,`history`,`seq`);
CREATE INDEX `idx_log_entries_leaf_hash` ON `log_entries`(`leaf_hash`);
CREATE TABLE `log_hashes` (`id` integer,`hash` blob NOT NULL,PRIMARY KEY (`id`));
CREATE TABLE `log_checkpoints` (`size` integer,`note` blob NOT NULL,`published` numeric NOT NULL,PRIMARY KEY (`size`));
CREATE INDEX `idx_log_checkpoints_published` ON `log_checkpoints`(`published`);
CREATE TABLE `log_map_nodes` (`label_key` blob,`version` integer,`node` blob NOT NULL,PRIMARY KEY (`label_key`,`version`));
CREATE TABLE `log_map_values` (`label` blob,`count` integer NOT NULL,`value` blob NOT NULL,PRIMARY KEY (`label`));

-- +goose Down
DROP TABLE `log_map_values`;
DROP TABLE `log_map_nodes`;
DROP TABLE `log_checkpoints`;
DROP TABLE `log_hashes`;
DROP INDEX `idx_log_entries_leaf_hash`;
DROP INDEX `idx_log_entries_history`;
DROP INDEX `idx_log_entries_seq`;
ALTER TABLE `log_entries` DROP COLUMN `leaf_hash`;
ALTER TABLE `log_entries` DROP COLUMN `history`;
ALTER TABLE `log_entries` DROP COLUMN `user_id`;
ALTER TABLE `log_entries` DROP COLUMN `seq`;
