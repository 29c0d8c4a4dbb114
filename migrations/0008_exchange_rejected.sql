-- A proposal the user rejected: who and when (0.01 s). Accepted ones carry the version
-- they produced (produced_major/minor); the rest stay proposed.
ALTER TABLE exchanges ADD COLUMN rejected_by TEXT;
ALTER TABLE exchanges ADD COLUMN rejected_at INTEGER;
