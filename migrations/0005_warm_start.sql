-- Whether a run used a spare sandbox with its interpreter's modules imported already
-- (warm start): 1 warm, 0 cold, NULL for runs that did not start.
ALTER TABLE runs ADD COLUMN warm_start INTEGER;
