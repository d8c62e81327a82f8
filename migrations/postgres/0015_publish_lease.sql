-- The publish step of a distributed run is leased: the worker that won it renews
-- `publisher_until` while it publishes, and when it dies or fails the lease lapses (or is given
-- up) and another worker takes the step over, instead of the run staying `running` for ever.
ALTER TABLE runs ADD COLUMN publisher_until TIMESTAMPTZ;
