-- The key that made a held call: an approval stands only while that key
-- is not revoked, checked in the transaction that gives or uses it, so a
-- revocation racing an approval cannot leave the approval for another
-- key of the agent. Holds made before this column have none, and are
-- judged as before.
ALTER TABLE holds ADD COLUMN key_id TEXT;
