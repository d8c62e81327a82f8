-- shopscribe store, SQLite. Timestamps are UTC RFC 3339 text with milliseconds, which sort
-- lexicographically in time order and read the same on every backend.

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job           TEXT    NOT NULL,
    status        TEXT    NOT NULL,            -- running | succeeded | failed
    provider      TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    entities      INTEGER NOT NULL DEFAULT 0,
    generated     INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    pending       INTEGER NOT NULL DEFAULT 0,
    tokens_in     INTEGER NOT NULL DEFAULT 0,
    tokens_out    INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL    NOT NULL DEFAULT 0,
    duration_ms   INTEGER NOT NULL DEFAULT 0,
    pages_written INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE INDEX runs_job ON runs (job, id);

-- Every generation attempt's outcome, never updated: the history of every text.
CREATE TABLE generations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        INTEGER NOT NULL REFERENCES runs (id),
    job           TEXT    NOT NULL,
    entity_key    TEXT    NOT NULL,
    input_hash    TEXT    NOT NULL,
    status        TEXT    NOT NULL,            -- ok | invalid | failed
    prompt_system TEXT    NOT NULL,
    prompt_user   TEXT    NOT NULL,
    output        TEXT,                        -- the raw content, also when invalid
    error         TEXT,
    provider      TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    tokens_in     INTEGER NOT NULL DEFAULT 0,
    tokens_out    INTEGER NOT NULL DEFAULT 0,
    cost_usd      REAL    NOT NULL DEFAULT 0,
    latency_ms    INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT    NOT NULL
);
CREATE INDEX generations_entity ON generations (job, entity_key, id);
CREATE INDEX generations_run ON generations (run_id);

-- The current pointer per entity, maintained in the same transaction as each generation insert,
-- so planning reads one row per entity instead of scanning history.
CREATE TABLE entity_state (
    job                 TEXT NOT NULL,
    entity_key          TEXT NOT NULL,
    last_generation_id  INTEGER NOT NULL,
    last_status         TEXT NOT NULL,
    last_input_hash     TEXT NOT NULL,
    good_generation_id  INTEGER,
    good_input_hash     TEXT,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (job, entity_key)
);
