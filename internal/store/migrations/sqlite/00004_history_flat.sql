-- Reads whose cost must not grow with history (issue 11). A device's open
-- requests are found from the user's open requests (idx_requests_user_state)
-- by probing each request's record for a key packet of the device, so the
-- probe needs the record and the device in one index; it replaces the
-- record-only index, whose reads it serves too. The operator's user and
-- party lists are paged by (created_at, id).

-- +goose Up
CREATE INDEX `idx_record_key_packets_record_device` ON `record_key_packets`(`record_id`,`device_id`);
DROP INDEX `idx_record_key_packets_record_id`;
CREATE INDEX `idx_users_created` ON `users`(`created_at`,`id`);
CREATE INDEX `idx_parties_created` ON `parties`(`created_at`,`id`);

-- +goose Down
DROP INDEX `idx_parties_created`;
DROP INDEX `idx_users_created`;
CREATE INDEX `idx_record_key_packets_record_id` ON `record_key_packets`(`record_id`);
DROP INDEX `idx_record_key_packets_record_device`;
