-- Personal API tokens: for agents and CI jobs. Only a SHA-256 of the token is kept;
-- a token carries its user's roles as configured at the time of each request.

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    username   TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (username);
