-- A decision's agent event is appended after its audit record commits, in
-- runs, from the audit log (the decision's own commit then writes only its
-- record). This cursor is the last audit row whose event is in the event
-- log; a store made before this version appended them with their records,
-- so it starts past every record there is.
INSERT INTO consumer_cursors (name, position, updated_at)
SELECT 'decision-events', COALESCE(MAX(rowid), 0), 0 FROM audit_log;
