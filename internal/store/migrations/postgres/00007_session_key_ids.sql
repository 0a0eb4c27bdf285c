-- The session key id of every approved record (the approval's
-- session-key-id, hex), so that a device asks in one read of this table's
-- primary key whether any other record of its user was approved with the
-- session key of the record it is checking, instead of reading the user's
-- whole record list before every approval (issue 11). A table of its own:
-- its primary key is the only way to read it, so no planner statistics can
-- turn the lookup into a scan of the user's records. Filled in for the
-- records approved before this version from their approval statements,
-- whose canonical form holds the line "session-key-id: <64 hex digits>".

-- +goose Up
CREATE TABLE approved_session_keys (
  user_id varchar(32) NOT NULL,
  session_key_id varchar(64) NOT NULL,
  record_id varchar(32) NOT NULL,
  PRIMARY KEY (user_id, session_key_id, record_id)
);
INSERT INTO approved_session_keys (user_id, session_key_id, record_id)
  SELECT user_id, skid, id FROM (
    SELECT user_id, id, substring(convert_from(decision_statement, 'UTF8') from E'\nsession-key-id: ([0-9a-f]{64})\n') AS skid
    FROM records WHERE state = 'approved' AND decision_statement IS NOT NULL
  ) approved WHERE skid IS NOT NULL;

-- +goose Down
DROP TABLE approved_session_keys;
