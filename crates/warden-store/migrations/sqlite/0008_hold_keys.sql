-- The key that made a held call: an approval stands only while that key
-- is not revoked, checked in the transaction that gives or uses it, so a
-- revocation racing an approval cannot leave the approval for another
-- key of the agent.
ALTER TABLE holds ADD COLUMN key_id TEXT;
-- Holds made before that can still be approved or used: the key their
-- call's record names (a record that is not JSON, edited in the
-- database, gives none).
UPDATE holds SET key_id = (
    SELECT CASE WHEN json_valid(a.record) THEN json_extract(a.record, '$.actor') END
    FROM audit_log a WHERE a.id = holds.audit_id
)
WHERE status IN ('pending', 'approved') AND redeemed_at IS NULL;
UPDATE holds SET key_id = NULL WHERE key_id IS NOT NULL AND key_id NOT LIKE 'key\_%' ESCAPE '\';
