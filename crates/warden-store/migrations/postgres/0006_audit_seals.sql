-- Each audit record's seal: an HMAC under a key derived from the master
-- key over its chain, sequence and hash, which a writer of the database
-- alone cannot make. Records stored before it are sealed once by the
-- operator's `warden audit seal`, found by the partial index (empty once
-- they are).
ALTER TABLE audit_log ADD COLUMN seal TEXT;
CREATE INDEX audit_log_unsealed ON audit_log (id) WHERE seal IS NULL;
-- A replica of a release before seals, still running beside one of this
-- release, cannot append a record without one (its write fails rather
-- than leave a record no one can seal); the records stored before are
-- not checked (NOT VALID) until they are sealed.
ALTER TABLE audit_log ADD CONSTRAINT audit_log_sealed CHECK (seal IS NOT NULL) NOT VALID;
