-- Archiving a script (issue 19): it leaves the list's queue and every run-all pass, its
-- versions, runs and git history stay. NULL: not archived.
ALTER TABLE scripts ADD COLUMN archived_at INTEGER;
ALTER TABLE scripts ADD COLUMN archived_by TEXT;
