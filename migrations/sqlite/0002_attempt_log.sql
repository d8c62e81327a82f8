-- The outcome of every attempt of a generation, in order: ["rate_limited", "transient", "ok"].
ALTER TABLE generations ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]';
