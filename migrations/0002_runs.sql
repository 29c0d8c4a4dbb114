-- Runs, their events, run-all passes, and production data.

CREATE TABLE passes (
    id           INTEGER PRIMARY KEY,
    mode         TEXT    NOT NULL CHECK (mode IN ('test', 'production')),
    on_failure   TEXT    NOT NULL CHECK (on_failure IN ('stop', 'continue')),
    requested_by TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    ended_at     INTEGER,
    message      TEXT
);

CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    script_id           INTEGER NOT NULL REFERENCES scripts(id),
    major               INTEGER NOT NULL,
    minor               INTEGER NOT NULL,
    pass_id             INTEGER REFERENCES passes(id),
    ordering            TEXT,
    mode                TEXT    NOT NULL CHECK (mode IN ('test', 'production')),
    requested_by        TEXT    NOT NULL,
    interpreter         TEXT    NOT NULL,
    interpreter_version TEXT    NOT NULL,
    backend             TEXT    NOT NULL,
    protections         TEXT,
    status              TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    ended_at            INTEGER,
    exit_code           INTEGER,
    limit_hit           TEXT,
    message             TEXT,
    output_bytes        INTEGER NOT NULL DEFAULT 0,
    artifacts           TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX runs_by_script ON runs (script_id, id);
CREATE INDEX runs_by_pass ON runs (pass_id);
CREATE INDEX runs_by_status ON runs (status);

-- Every event of a run, in order: log lines (bounded by the output cap), status
-- changes, and the final `complete`.
CREATE TABLE run_events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq    INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    data   TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

-- Production data never goes to git or to the LLM; editors only.
CREATE TABLE production_data (
    script_id  INTEGER PRIMARY KEY REFERENCES scripts(id),
    data       BLOB    NOT NULL,
    updated_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Events of a run-all pass: its status, each script's state changes, `complete`.
CREATE TABLE pass_events (
    pass_id INTEGER NOT NULL REFERENCES passes(id),
    seq     INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    data    TEXT    NOT NULL,
    PRIMARY KEY (pass_id, seq)
) WITHOUT ROWID;
