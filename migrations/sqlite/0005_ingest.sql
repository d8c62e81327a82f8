-- Ingestion: every delivered file, every line as delivered (bronze, rejects with reasons), and
-- silver records with full SCD2 history. At most one current row per key: the partial unique
-- index makes a second current version impossible, whatever the code does.

CREATE TABLE ingested_files (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset     TEXT    NOT NULL,
    uri         TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    checksum    TEXT    NOT NULL,
    status      TEXT    NOT NULL,             -- loading | done | failed
    lines       INTEGER NOT NULL DEFAULT 0,
    accepted    INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    inserted    INTEGER NOT NULL DEFAULT 0,
    changed     INTEGER NOT NULL DEFAULT 0,
    unchanged   INTEGER NOT NULL DEFAULT 0,
    stale       INTEGER NOT NULL DEFAULT 0,
    deleted     INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    error       TEXT
);
CREATE INDEX ingested_files_checksum ON ingested_files (dataset, checksum, status);

CREATE TABLE raw_records (
    file_id  INTEGER NOT NULL REFERENCES ingested_files (id),
    line_no  INTEGER NOT NULL,
    raw      TEXT    NOT NULL,
    status   TEXT    NOT NULL,                -- ok | rejected
    reason   TEXT,
    PRIMARY KEY (file_id, line_no)
);
CREATE INDEX raw_records_rejected ON raw_records (file_id) WHERE status = 'rejected';

-- Accepted lines of a delivery are staged in a table of their own per file
-- (ingest_staging_<file id>), created by the ingest, indexed before its merge, dropped after.

CREATE TABLE records (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset      TEXT    NOT NULL,
    record_key   TEXT    NOT NULL,            -- JSON array of the key parts: no concatenation collisions
    payload      TEXT    NOT NULL,
    row_hash     TEXT    NOT NULL,
    version_num  DOUBLE PRECISION,
    version_text TEXT,
    valid_from   TEXT    NOT NULL,
    valid_to     TEXT,
    deleted      INTEGER NOT NULL DEFAULT 0,
    file_id      INTEGER NOT NULL
);
CREATE UNIQUE INDEX records_current ON records (dataset, record_key) WHERE valid_to IS NULL;
CREATE INDEX records_history ON records (dataset, record_key, valid_from);
