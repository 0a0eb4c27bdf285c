-- Every change to the rows that authenticate a request (tokens, devices,
-- parties) is announced on the NOTIFY channel keyholder_auth, whoever
-- makes it: keyholderd on any replica, or an operator in psql. Each
-- replica's token cache (store.TokenCache) LISTENs there and empties
-- itself, so a revoked device is refused everywhere within a notification's
-- delay. Inserts are not announced: a new token or owner was in no cache.
-- Neither is a statement that changed no row, nor the deletion of tokens
-- that had all expired (the sweeper's, every minute: a cache never serves
-- a token past its expiry), so that they do not empty every replica's
-- cache. The payload is the schema, for the logs; any notification
-- empties the cache.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION keyholder_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A TRUNCATE trigger has no transition table: only the others look.
  IF TG_OP <> 'TRUNCATE' THEN
    IF TG_TABLE_NAME = 'tokens' AND TG_OP = 'DELETE' THEN
      IF NOT EXISTS (SELECT FROM changed WHERE expires_at > now()) THEN
        RETURN NULL;
      END IF;
    ELSIF NOT EXISTS (SELECT FROM changed) THEN
      RETURN NULL;
    END IF;
  END IF;
  PERFORM pg_notify('keyholder_auth', TG_TABLE_SCHEMA);
  RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tokens_auth_updated AFTER UPDATE ON tokens REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER tokens_auth_deleted AFTER DELETE ON tokens REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER tokens_auth_truncated AFTER TRUNCATE ON tokens
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER devices_auth_updated AFTER UPDATE ON devices REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER devices_auth_deleted AFTER DELETE ON devices REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER devices_auth_truncated AFTER TRUNCATE ON devices
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER parties_auth_updated AFTER UPDATE ON parties REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER parties_auth_deleted AFTER DELETE ON parties REFERENCING OLD TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER parties_auth_truncated AFTER TRUNCATE ON parties
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();

-- +goose Down
DROP TRIGGER parties_auth_truncated ON parties;
DROP TRIGGER parties_auth_deleted ON parties;
DROP TRIGGER parties_auth_updated ON parties;
DROP TRIGGER devices_auth_truncated ON devices;
DROP TRIGGER devices_auth_deleted ON devices;
DROP TRIGGER devices_auth_updated ON devices;
DROP TRIGGER tokens_auth_truncated ON tokens;
DROP TRIGGER tokens_auth_deleted ON tokens;
DROP TRIGGER tokens_auth_updated ON tokens;
DROP FUNCTION keyholder_auth_changed();
