-- Approvals given and not yet used: the background sweep audits each one
-- that lapses, and reads only these, however many approvals were used.
CREATE INDEX holds_unused_approvals ON holds (decided_at)
    WHERE status = 'approved' AND redeemed_at IS NULL;
