-- Bronze in compressed blocks (see src/ingest/bronze.rs): one row per run of a few thousand
-- lines of a file instead of one row per line. Rejected lines are also kept with their reason in
-- raw_rejects. raw_records keeps the bronze of files ingested before this migration (read
-- together with the blocks); nothing new is written to it.

CREATE TABLE raw_blocks (
    file_id    INTEGER NOT NULL REFERENCES ingested_files (id),
    first_line INTEGER NOT NULL,
    last_line  INTEGER NOT NULL,
    lines      INTEGER NOT NULL,
    raw_bytes  INTEGER NOT NULL,          -- before compression
    codec      TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (file_id, first_line)
);

CREATE TABLE raw_rejects (
    file_id INTEGER NOT NULL REFERENCES ingested_files (id),
    line_no INTEGER NOT NULL,
    reason  TEXT    NOT NULL,
    raw     TEXT    NOT NULL,
    PRIMARY KEY (file_id, line_no)
);
