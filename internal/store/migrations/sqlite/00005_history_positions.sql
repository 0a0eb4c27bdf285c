-- Each log leaf's position in its user history, so that a history's
-- length and a page of it are index lookups instead of a COUNT and an
-- OFFSET that grow with the history; filled in for the leaves sequenced
-- before it.

-- +goose Up
ALTER TABLE `log_entries` ADD COLUMN `hist_pos` integer;
UPDATE `log_entries` SET `hist_pos` = r.pos FROM (
  SELECT `index` AS idx, ROW_NUMBER() OVER (PARTITION BY `user_id`, `history` ORDER BY `seq`) - 1 AS pos
  FROM `log_entries` WHERE `seq` IS NOT NULL AND `user_id` <> ''
) AS r WHERE `log_entries`.`index` = r.idx;
CREATE INDEX `idx_log_entries_hist_pos` ON `log_entries`(`user_id`,`history`,`hist_pos`);

-- +goose Down
DROP INDEX `idx_log_entries_hist_pos`;
ALTER TABLE `log_entries` DROP COLUMN `hist_pos`;
