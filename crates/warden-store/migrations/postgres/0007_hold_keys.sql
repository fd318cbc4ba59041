-- The key that made a held call: an approval stands only while that key
-- is not revoked, checked in the transaction that gives or uses it, so a
-- revocation racing an approval cannot leave the approval for another
-- key of the agent.
ALTER TABLE holds ADD COLUMN key_id TEXT;
-- Holds made before that can still be approved or used (the others are
-- left alone: the table is locked while this runs): the key their call's
-- record names, read from the record's text as Warden writes it (a record
-- that is not JSON, edited in the database, is not parsed, so it cannot
-- stop the migration).
UPDATE holds SET key_id = (
    SELECT substring(a.record FROM '"actor":"(key_[0-9a-f]+)"') FROM audit_log a
    WHERE a.id = holds.audit_id
)
WHERE status IN ('pending', 'approved') AND redeemed_at IS NULL;
