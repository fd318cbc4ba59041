-- The key that made a held call: an approval stands only while that key
-- is not revoked, checked in the transaction that gives or uses it, so a
-- revocation racing an approval cannot leave the approval for another
-- key of the agent.
ALTER TABLE holds ADD COLUMN key_id TEXT;
-- Holds made before: the key their call's record names (a record that is
-- not JSON, edited in the database, gives none).
UPDATE holds SET key_id = (
    SELECT json_extract(a.record, '$.actor') FROM audit_log a
    WHERE a.id = holds.audit_id AND json_valid(a.record)
      AND json_extract(a.record, '$.actor') LIKE 'key\_%' ESCAPE '\'
);
