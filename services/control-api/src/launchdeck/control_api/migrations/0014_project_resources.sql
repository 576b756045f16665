-- A project's resources: what its app may take when it runs as a container (`memory_mb`,
-- `cpus`; the API's ProjectResources as JSON). Every deploy command carries them, so a
-- redeploy after a change applies them. '{}': the deploy-engine's defaults.
ALTER TABLE projects
    ADD COLUMN resources jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(resources) = 'object');
