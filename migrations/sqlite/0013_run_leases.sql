-- A run's lease: the process working a run renews it while the run lasts, so a run whose process
-- died (kill -9, a crash, a lost machine) is found by the next process that opens the store and
-- marked `abandoned` instead of staying `running` for ever. Unix milliseconds; NULL = no process
-- holds the run (a distributed run waiting for workers; runs of earlier versions).
ALTER TABLE runs ADD COLUMN lease_expires_ms INTEGER;

-- Runs left `running` by an earlier version can only be dead ones (a run of this store in
-- progress during the upgrade renews nothing, and its own finish still records its outcome):
-- an expired lease lets the next open mark them.
UPDATE runs SET lease_expires_ms = 0 WHERE status = 'running';

-- Pages a run removed because their entities left the source (reported per run).
ALTER TABLE runs ADD COLUMN pages_removed INTEGER NOT NULL DEFAULT 0;
