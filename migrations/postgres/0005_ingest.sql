-- Ingestion: every delivered file, every line as delivered (bronze, rejects with reasons), and
-- silver records with full SCD2 history. At most one current row per key: the partial unique
-- index makes a second current version impossible, whatever the code does.

CREATE TABLE ingested_files (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset     TEXT    NOT NULL,
    uri         TEXT    NOT NULL,
    size        BIGINT NOT NULL,
    checksum    TEXT    NOT NULL,
    status      TEXT    NOT NULL,             -- loading | done | failed
    lines       BIGINT NOT NULL DEFAULT 0,
    accepted    BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    inserted    BIGINT NOT NULL DEFAULT 0,
    changed     BIGINT NOT NULL DEFAULT 0,
    unchanged   BIGINT NOT NULL DEFAULT 0,
    stale       BIGINT NOT NULL DEFAULT 0,
    deleted     BIGINT NOT NULL DEFAULT 0,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    error       TEXT
);
CREATE INDEX ingested_files_checksum ON ingested_files (dataset, checksum, status);

CREATE TABLE raw_records (
    file_id  BIGINT NOT NULL REFERENCES ingested_files (id),
    line_no  BIGINT NOT NULL,
    raw      TEXT    NOT NULL,
    status   TEXT    NOT NULL,                -- ok | rejected
    reason   TEXT,
    PRIMARY KEY (file_id, line_no)
);
CREATE INDEX raw_records_rejected ON raw_records (file_id) WHERE status = 'rejected';

-- Accepted lines of a delivery are staged in a table of their own per file
-- (ingest_staging_<file id>), created by the ingest, indexed before its merge, dropped after.

CREATE TABLE records (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset      TEXT    NOT NULL,
    record_key   TEXT    NOT NULL,            -- JSON array of the key parts: no concatenation collisions
    payload      TEXT    NOT NULL,
    row_hash     TEXT    NOT NULL,
    version_num  DOUBLE PRECISION,
    version_text TEXT,
    valid_from   TEXT    NOT NULL,
    valid_to     TEXT,
    deleted      BIGINT NOT NULL DEFAULT 0,
    file_id      BIGINT NOT NULL
);
CREATE UNIQUE INDEX records_current ON records (dataset, record_key) WHERE valid_to IS NULL;
CREATE INDEX records_history ON records (dataset, record_key, valid_from);
