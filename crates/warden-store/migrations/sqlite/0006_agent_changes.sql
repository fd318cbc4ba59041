-- An agent's changes by time: a held call's approval is judged on the
-- changes since it was held, found without walking the agent's decisions
-- (or every agent's since then).
CREATE INDEX audit_log_agent_changes ON audit_log (org_id, environment, agent_id, at)
    WHERE kind = 'agent_change';
