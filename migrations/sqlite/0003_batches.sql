-- Batch API work: a batch row is written before the provider's batch is created (status
-- 'submitting', with its input file), then carries the provider's batch id, so a killed process
-- finds and collects every batch it paid for.
CREATE TABLE batches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          INTEGER NOT NULL REFERENCES runs (id),
    job             TEXT    NOT NULL,
    input_file_id   TEXT    NOT NULL,
    batch_id        TEXT,                   -- the provider's id, once created
    status          TEXT    NOT NULL,       -- submitting | submitted | collected | failed
    requests        INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    collected_at    TEXT,
    error           TEXT
);
CREATE INDEX batches_job ON batches (job, status);

-- One row per request of a batch: what to record when its answer comes back.
CREATE TABLE batch_items (
    batch_row       INTEGER NOT NULL REFERENCES batches (id),
    custom_id       TEXT    NOT NULL,
    entity_key      TEXT    NOT NULL,
    input_hash      TEXT    NOT NULL,
    prompt_system   TEXT    NOT NULL,
    prompt_user     TEXT    NOT NULL,
    PRIMARY KEY (batch_row, custom_id)
);
