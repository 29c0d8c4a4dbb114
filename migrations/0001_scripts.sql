-- Scripts, their versions and the git commits that carry them.
-- Timestamps are centiseconds since the Unix epoch (0.01 s precision).
-- Ordering numbers are exact decimals: integer part + fractional digits (no trailing zeros).

CREATE TABLE scripts (
    id              INTEGER PRIMARY KEY,
    filename        TEXT    NOT NULL UNIQUE,
    ordering_group  INTEGER NOT NULL,
    ordering_frac   TEXT    NOT NULL DEFAULT '',
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    major           INTEGER NOT NULL,
    minor           INTEGER NOT NULL,
    last_modified   INTEGER NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    parent_id       INTEGER REFERENCES scripts(id),
    parent_major    INTEGER,
    parent_minor    INTEGER,
    test_data_blob  TEXT,
    published_major INTEGER,
    published_minor INTEGER,
    published_at    INTEGER,
    published_by    TEXT
);
CREATE UNIQUE INDEX scripts_by_ordering ON scripts (ordering_group, ordering_frac);

CREATE TABLE versions (
    script_id  INTEGER NOT NULL REFERENCES scripts(id),
    major      INTEGER NOT NULL,
    minor      INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('create', 'save', 'bump', 'fork')),
    commit_id  TEXT    NOT NULL,
    blob_id    TEXT    NOT NULL,
    branch     TEXT    NOT NULL,
    committer  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (script_id, major, minor)
) WITHOUT ROWID;

-- Every commit Scriptorium made (or adopted at start-up), so start-up repair knows
-- where on each branch the metadata stops.
CREATE TABLE commits (
    commit_id  TEXT    PRIMARY KEY,
    branch     TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    script_id  INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE publications (
    script_id    INTEGER NOT NULL REFERENCES scripts(id),
    major        INTEGER NOT NULL,
    minor        INTEGER NOT NULL,
    commit_id    TEXT    NOT NULL,
    published_by TEXT    NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE INDEX publications_by_script ON publications (script_id, published_at);

CREATE TABLE test_data_changes (
    script_id  INTEGER NOT NULL REFERENCES scripts(id),
    blob_id    TEXT    NOT NULL,
    commit_id  TEXT    NOT NULL,
    changed_by TEXT    NOT NULL,
    changed_at INTEGER NOT NULL
);
CREATE INDEX test_data_changes_by_script ON test_data_changes (script_id, changed_at);

CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY,
    username   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
