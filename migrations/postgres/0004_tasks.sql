-- Distributed runs: the planned work as tasks that any number of workers claim with
-- FOR UPDATE SKIP LOCKED under an expiring lease, and the live workers (heartbeats), from which
-- each worker derives its share of the provider's rate limit.

ALTER TABLE runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'local';      -- local | distributed
ALTER TABLE runs ADD COLUMN publisher TEXT;                           -- the worker that finished it

CREATE TABLE tasks (
    run_id      BIGINT  NOT NULL REFERENCES runs (id),
    seq         BIGINT  NOT NULL,
    entity_key  TEXT    NOT NULL,
    input_hash  TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending',   -- pending | running | done | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    lease_until TIMESTAMPTZ,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX tasks_open ON tasks (run_id, seq) WHERE state IN ('pending', 'running');

CREATE TABLE workers (
    id          TEXT PRIMARY KEY,
    run_id      BIGINT,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat   TIMESTAMPTZ NOT NULL DEFAULT now()
);
