-- Core schema: installation marker, server settings, organizations, API keys,
-- agents and idempotency records. Times are milliseconds since the epoch.
CREATE TABLE installation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    first_org_id TEXT NOT NULL,
    installed_at BIGINT NOT NULL
);

CREATE TABLE server_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    plan TEXT NOT NULL,
    rate_limit_per_minute BIGINT NOT NULL,
    rate_limit_burst BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    last_four TEXT NOT NULL,
    secret_digest TEXT NOT NULL UNIQUE,
    previous_digest TEXT,
    previous_valid_until BIGINT,
    scopes TEXT NOT NULL,
    agent_id TEXT,
    allowed_cidrs TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    rotated_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (org_id, environment, created_at, id);
CREATE INDEX api_keys_previous ON api_keys (previous_digest);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    owner TEXT,
    framework TEXT,
    external_id TEXT,
    tags TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    -- Bumped by every update: concurrent changes cannot overwrite each other.
    revision BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT agents_name_unique UNIQUE (org_id, environment, name),
    CONSTRAINT agents_external_id_unique UNIQUE (org_id, environment, external_id)
);
-- Sorting by name uses agents_name_unique: names are unique per tenant.
CREATE INDEX agents_created ON agents (org_id, environment, created_at, id);

CREATE TABLE agent_tags (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (agent_id, tag)
);
CREATE INDEX agent_tags_tag ON agent_tags (tag, agent_id);

CREATE TABLE idempotency_keys (
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status_code BIGINT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, environment, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
