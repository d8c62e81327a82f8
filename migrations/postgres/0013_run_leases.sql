-- A run's lease: the process working a run renews it while the run lasts, so a run whose process
-- died (kill -9, a crash, a lost machine) is found by the next process that opens the store and
-- marked `abandoned` instead of staying `running` for ever. Unix milliseconds; NULL = no process
-- holds the run (a distributed run waiting for workers; runs of earlier versions).
ALTER TABLE runs ADD COLUMN lease_expires_ms BIGINT;

-- Runs left `running` by an earlier version that are not distributed (those have tasks and are
-- worked by workers, not by the process that created them) can only be dead ones: an expired
-- lease lets the next open mark them. A run finishing after all still records its outcome.
UPDATE runs SET lease_expires_ms = 0
WHERE status = 'running' AND mode = 'local'
  AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = runs.id);

-- Pages a run removed because their entities left the source (reported per run).
ALTER TABLE runs ADD COLUMN pages_removed BIGINT NOT NULL DEFAULT 0;
