-- An approved record's session key id (the approval's session-key-id,
-- hex), so that a device can ask whether any other record of its user
-- was approved with the session key of the record it is checking, in one
-- indexed read, instead of reading the user's whole record list before
-- every approval (issue 11). Filled in for the records approved before
-- this version from their approval statements, whose canonical form
-- holds the line "session-key-id: <64 hex digits>" (17 characters with
-- the newline before it).

-- +goose Up
ALTER TABLE `records` ADD COLUMN `session_key_id` text;
UPDATE `records`
  SET `session_key_id` = substr(CAST(`decision_statement` AS TEXT), instr(CAST(`decision_statement` AS TEXT), char(10) || 'session-key-id: ') + 17, 64)
  WHERE `state` = 'approved' AND `decision_statement` IS NOT NULL
    AND instr(CAST(`decision_statement` AS TEXT), char(10) || 'session-key-id: ') > 0;
CREATE INDEX `idx_records_session_key` ON `records`(`user_id`,`session_key_id`);

-- +goose Down
DROP INDEX `idx_records_session_key`;
ALTER TABLE `records` DROP COLUMN `session_key_id`;
