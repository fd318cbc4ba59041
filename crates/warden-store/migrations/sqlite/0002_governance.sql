-- Agent governance: policies and their versions, per-tenant settings, the
-- hash-chained audit log with its chain heads, step-up holds, drift profiles.
CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    version INTEGER NOT NULL,
    -- The whole policy as JSON (warden_core::policy::PolicyRecord).
    document TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT policies_name_unique UNIQUE (org_id, environment, name)
) WITHOUT ROWID;
CREATE INDEX policies_created ON policies (org_id, environment, created_at, id);

CREATE TABLE policy_versions (
    policy_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    change TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (policy_id, version)
) WITHOUT ROWID;

-- Bumped with every policy change so that replicas notice and recompile.
CREATE TABLE tenant_settings (
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, environment, name)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,
    agent_id TEXT,
    tool TEXT,
    decision TEXT,
    session_id TEXT,
    drift_micros INTEGER,
    record TEXT NOT NULL,
    previous_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (org_id, environment, sequence)
);
CREATE INDEX audit_log_agent ON audit_log (org_id, environment, agent_id, sequence);
CREATE INDEX audit_log_at ON audit_log (org_id, environment, at);
-- No index by session here: sessions interleave, so such an index takes a
-- page write per session per commit on the decision path. A session filter
-- scans the environment's records newest first (PostgreSQL keeps one).

-- The last link of each chain: appending updates it in the same
-- transaction only if it is still what the appender saw.
CREATE TABLE audit_heads (
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (org_id, environment)
) WITHOUT ROWID;

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    audit_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    args_sha256 TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    session_id TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    comment TEXT,
    redeemed_at INTEGER
) WITHOUT ROWID;
CREATE INDEX holds_tenant ON holds (org_id, environment, created_at, id);
CREATE INDEX holds_pending ON holds (status, expires_at);

CREATE TABLE drift_profiles (
    org_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    -- The audit sequence of the last call folded into the profile.
    sequence INTEGER NOT NULL,
    profile TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, environment, agent_id)
) WITHOUT ROWID;
