-- A small record's data packet, kept with its rows instead of in a blob
-- file (issue 11): an upload of a few kilobytes then costs one commit
-- instead of a file's creation, fsync and rename and two directory
-- fsyncs. A table of its own, so that no record list reads it.

-- +goose Up
CREATE TABLE inline_ciphertexts (
  record_id varchar(32) PRIMARY KEY,
  data bytea NOT NULL
);

-- +goose Down
DROP TABLE inline_ciphertexts;
