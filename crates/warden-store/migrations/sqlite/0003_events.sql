-- Telemetry: the durable event log that the search index (and later the
-- detector and forwarders) consume, their cursors, and organization-wide
-- settings such as event retention.
CREATE TABLE event_log_head (
    id INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
INSERT INTO event_log_head (id, last_seq) VALUES (1, 0);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    id TEXT NOT NULL,
    -- The event's own time: retention goes by it.
    occurred_at INTEGER NOT NULL,
    -- The whole event as JSON (warden_core::event::Event).
    body TEXT NOT NULL
);
CREATE INDEX events_occurred ON events (org_id, occurred_at);

CREATE TABLE consumer_cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE org_settings (
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
) WITHOUT ROWID;
