-- shopscribe store, PostgreSQL (same tables and types as the SQLite store). Timestamps are UTC RFC 3339 text with milliseconds, which sort
-- lexicographically in time order and read the same on every backend.

CREATE TABLE runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           TEXT    NOT NULL,
    status        TEXT    NOT NULL,            -- running | succeeded | failed
    provider      TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    entities      BIGINT NOT NULL DEFAULT 0,
    generated     BIGINT NOT NULL DEFAULT 0,
    skipped       BIGINT NOT NULL DEFAULT 0,
    failed        BIGINT NOT NULL DEFAULT 0,
    pending       BIGINT NOT NULL DEFAULT 0,
    tokens_in     BIGINT NOT NULL DEFAULT 0,
    tokens_out    BIGINT NOT NULL DEFAULT 0,
    cost_usd      DOUBLE PRECISION    NOT NULL DEFAULT 0,
    duration_ms   BIGINT NOT NULL DEFAULT 0,
    pages_written BIGINT NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE INDEX runs_job ON runs (job, id);

-- Every generation attempt's outcome, never updated: the history of every text.
CREATE TABLE generations (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        BIGINT NOT NULL REFERENCES runs (id),
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
    tokens_in     BIGINT NOT NULL DEFAULT 0,
    tokens_out    BIGINT NOT NULL DEFAULT 0,
    cost_usd      DOUBLE PRECISION    NOT NULL DEFAULT 0,
    latency_ms    BIGINT NOT NULL DEFAULT 0,
    attempts      BIGINT NOT NULL DEFAULT 1,
    created_at    TEXT    NOT NULL
);
CREATE INDEX generations_entity ON generations (job, entity_key, id);
CREATE INDEX generations_run ON generations (run_id);

-- The current pointer per entity, maintained in the same transaction as each generation insert,
-- so planning reads one row per entity instead of scanning history.
CREATE TABLE entity_state (
    job                 TEXT NOT NULL,
    entity_key          TEXT NOT NULL,
    last_generation_id  BIGINT NOT NULL,
    last_status         TEXT NOT NULL,
    last_input_hash     TEXT NOT NULL,
    good_generation_id  BIGINT,
    good_input_hash     TEXT,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (job, entity_key)
);
