-- Every LLM exchange: what was sent (after filtering and pseudonymisation), what came
-- back, the tools called, usage and cost, and the version it produced once saved.

CREATE TABLE exchanges (
    id                INTEGER PRIMARY KEY,
    script_id         INTEGER NOT NULL REFERENCES scripts(id),
    username          TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    instruction       TEXT    NOT NULL,
    prompt_sent       TEXT    NOT NULL,
    raw_response      TEXT    NOT NULL DEFAULT '',
    tool_calls        TEXT    NOT NULL DEFAULT '[]',
    pseudonymisation  TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('pending', 'ok', 'blocked', 'error')),
    error             TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost              REAL    NOT NULL DEFAULT 0,
    latency_ms        INTEGER NOT NULL DEFAULT 0,
    proposed_code     TEXT,
    produced_major    INTEGER,
    produced_minor    INTEGER
);
CREATE INDEX exchanges_by_script ON exchanges (script_id, id);
