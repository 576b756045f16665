-- Deployment history: what triggered each deployment, and at most one active deployment per
-- project and environment (activation supersedes the previous one in the same transaction).

ALTER TABLE deployments
    ADD COLUMN trigger text NOT NULL DEFAULT 'build'
    CHECK (trigger IN ('build', 'api', 'rollback'));

CREATE UNIQUE INDEX deployments_one_active_idx
    ON deployments (project_id, environment) WHERE status = 'active';

-- Keyset pagination of a project's deployments (newest first, id breaks ties).
DROP INDEX deployments_project_created_idx;
CREATE INDEX deployments_project_created_idx ON deployments (project_id, created_at DESC, id DESC);

CREATE INDEX builds_deployment_idx ON builds (deployment_id);
