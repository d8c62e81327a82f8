-- Bronze in compressed blocks (see src/ingest/bronze.rs): one row per run of a few thousand
-- lines of a file instead of one row per line. Rejected lines are also kept with their reason in
-- raw_rejects. raw_records keeps the bronze of files ingested before this migration (read
-- together with the blocks); nothing new is written to it.

CREATE TABLE raw_blocks (
    file_id    BIGINT  NOT NULL REFERENCES ingested_files (id),
    first_line BIGINT  NOT NULL,
    last_line  BIGINT  NOT NULL,
    lines      BIGINT  NOT NULL,
    raw_bytes  BIGINT  NOT NULL,          -- before compression
    codec      TEXT    NOT NULL,
    data       BYTEA   NOT NULL,
    PRIMARY KEY (file_id, first_line)
);

CREATE TABLE raw_rejects (
    file_id BIGINT  NOT NULL REFERENCES ingested_files (id),
    line_no BIGINT  NOT NULL,
    reason  TEXT    NOT NULL,
    raw     TEXT    NOT NULL,
    PRIMARY KEY (file_id, line_no)
);

-- The blocks are compressed already: stored out of line without another (pglz) attempt.
ALTER TABLE raw_blocks ALTER COLUMN data SET STORAGE EXTERNAL;
