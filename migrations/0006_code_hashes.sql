-- The executable-code hash of each script blob (issue 16, the duplicate-code rule on
-- prod): SHA-256 of the AST without docstrings and comments, as the syntax checker
-- computes it. Keyed by blob, so every version (`versions.blob_id`) and every file on
-- `prod` (also one put there with the git CLI) has its hash; filled as blobs are saved
-- or first compared. `scheme` names the normalisation, so a later change of it
-- recomputes rather than compares unlike hashes.
CREATE TABLE code_hashes (
    blob_id   TEXT    PRIMARY KEY,
    code_hash TEXT    NOT NULL,
    scheme    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX code_hashes_by_hash ON code_hashes (code_hash);
