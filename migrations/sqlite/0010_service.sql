-- The service and the watcher: small named state values that must survive a restart (what
-- `watch` has already seen), and per-job locks so that no two processes run one job at once.

CREATE TABLE service_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE job_locks (
    job        TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms INTEGER NOT NULL   -- Unix milliseconds; a lock past it is free
);
