-- An approved record's session key id (the approval's session-key-id,
-- hex), so that a device can ask whether any other record of its user
-- was approved with the session key of the record it is checking, in one
-- indexed read, instead of reading the user's whole record list before
-- every approval (issue 11). Filled in for the records approved before
-- this version from their approval statements, whose canonical form
-- holds the line "session-key-id: <64 hex digits>".

-- +goose Up
ALTER TABLE records ADD COLUMN session_key_id varchar(64);
UPDATE records
  SET session_key_id = substring(convert_from(decision_statement, 'UTF8') from E'\nsession-key-id: ([0-9a-f]{64})\n')
  WHERE state = 'approved' AND decision_statement IS NOT NULL;
CREATE INDEX idx_records_session_key ON records (user_id, session_key_id);

-- +goose Down
DROP INDEX idx_records_session_key;
ALTER TABLE records DROP COLUMN session_key_id;
