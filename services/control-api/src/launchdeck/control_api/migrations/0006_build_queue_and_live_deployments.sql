-- A safe build queue, and deployments that stay live while their app is unhealthy.

-- Why a finished build ended so, where a client may act on it without reading `error`:
-- `timeout` (failed past its time limit) or `cancelled` (cancelled on request).
ALTER TABLE builds ADD COLUMN reason text;
-- When a cancel was asked for: a queued build is cancelled at once, a running one once its
-- worker has stopped it.
ALTER TABLE builds ADD COLUMN cancel_requested_at timestamptz;

-- The live deployment of a project and environment is `active`, or `unhealthy` while its app
-- keeps crashing (the edge still routes to it; it comes back to `active` once it serves). At
-- most one of them: activating another supersedes (or rolls back) it in the same transaction.
DROP INDEX deployments_one_active_idx;
CREATE UNIQUE INDEX deployments_one_live_idx
    ON deployments (project_id, environment) WHERE status IN ('active', 'unhealthy');
