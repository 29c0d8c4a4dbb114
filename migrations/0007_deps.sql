-- Per-script dependencies: the lock committed with a version (`scripts/<file>.lock`),
-- as its git blob and the sha256 of its text; NULL when the version declares none.
ALTER TABLE versions ADD COLUMN lock_blob TEXT;
ALTER TABLE versions ADD COLUMN lock_hash TEXT;
-- The lock a run's environment was built from.
ALTER TABLE runs ADD COLUMN lock_hash TEXT;
