-- Operator limits: when each build last changed status (the stuck-jobs sweep measures a build's
-- silence from it, as it does a deployment's from `deployments.updated_at`), and the indexes
-- the sweeps and the retention pruning read by.

ALTER TABLE builds ADD COLUMN updated_at timestamptz;
UPDATE builds SET updated_at = COALESCE(finished_at, started_at, created_at);
ALTER TABLE builds
    ALTER COLUMN updated_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT now();

-- Unfinished builds and unsettled deployments, by how long they have been silent.
CREATE INDEX builds_unfinished_idx ON builds (updated_at)
    WHERE status IN ('queued', 'cloning', 'installing', 'building', 'packaging');
CREATE INDEX deployments_unsettled_idx ON deployments (updated_at)
    WHERE status IN ('pending', 'activating');

-- Archived logs and inbox rows, by age.
CREATE INDEX build_logs_created_idx ON build_logs (created_at);
CREATE INDEX processed_events_processed_idx ON processed_events (processed_at);
