-- Issue 12: exact bytes and listed blank lines. Additive: a store of the previous release opens
-- and upgrades in place.
-- raw_rejects.kind: 'rejected' (counts against max_reject_share) or 'skipped' (a blank line: kept,
-- counted, listed, not a failure). raw_rejects.raw_bytes: the line's exact bytes when `raw` (text,
-- which cannot hold NUL on PostgreSQL) is not them: a NUL, invalid UTF-8. NULL otherwise.
ALTER TABLE raw_rejects ADD COLUMN kind TEXT NOT NULL DEFAULT 'rejected';
ALTER TABLE raw_rejects ADD COLUMN raw_bytes BLOB;
-- Blank lines of a file (part of `lines`, not of `rejected`).
ALTER TABLE ingested_files ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
