-- Every chat message once: the message id (a ULID, fixed when the message was typed) is the
-- key, so storing a message again (a redelivery, two archivers, two gateways) changes nothing.
CREATE TABLE IF NOT EXISTS charla_messages (
    id        TEXT PRIMARY KEY,
    room      TEXT NOT NULL,
    usuario   TEXT NOT NULL,
    mensaje   TEXT NOT NULL,
    hora      TEXT NOT NULL DEFAULT '',
    ts_us     BIGINT NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- 'simple': no language's stemming, so Spanish and English chat are searched alike.
    search    TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', usuario || ' ' || mensaje)) STORED
);

-- A room's messages in order (send time, then id), for pages and `before=ID`.
CREATE INDEX IF NOT EXISTS charla_messages_room_order ON charla_messages (room, ts_us, id);
-- Full-text search.
CREATE INDEX IF NOT EXISTS charla_messages_search ON charla_messages USING GIN (search);
