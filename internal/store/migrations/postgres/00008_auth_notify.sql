-- Every change to the rows that authenticate a request (tokens, devices,
-- parties) is announced on the NOTIFY channel keyholder_auth, whoever
-- makes it: keyholderd on any replica, or an operator in psql. Each
-- replica's token cache (store.TokenCache) LISTENs there and empties
-- itself, so a revoked device is refused everywhere within a notification's
-- delay, and a replica that cannot LISTEN does not cache at all. Inserts
-- are not announced: a new token or owner was in no cache. The payload is
-- the schema, for the logs; any notification empties the cache.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION keyholder_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('keyholder_auth', TG_TABLE_SCHEMA);
  RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tokens_auth_changed AFTER UPDATE OR DELETE OR TRUNCATE ON tokens
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER devices_auth_changed AFTER UPDATE OR DELETE OR TRUNCATE ON devices
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();
CREATE TRIGGER parties_auth_changed AFTER UPDATE OR DELETE OR TRUNCATE ON parties
  FOR EACH STATEMENT EXECUTE FUNCTION keyholder_auth_changed();

-- +goose Down
DROP TRIGGER parties_auth_changed ON parties;
DROP TRIGGER devices_auth_changed ON devices;
DROP TRIGGER tokens_auth_changed ON tokens;
DROP FUNCTION keyholder_auth_changed();
