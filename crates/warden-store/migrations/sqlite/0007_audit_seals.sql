-- Each audit record's seal: an HMAC under a key derived from the master
-- key over its chain, sequence and hash, which a writer of the database
-- alone cannot make. Records stored before it are sealed once by the
-- operator's `warden audit seal`, found by the partial index (empty once
-- they are).
ALTER TABLE audit_log ADD COLUMN seal TEXT;
CREATE INDEX audit_log_unsealed ON audit_log (id) WHERE seal IS NULL;
