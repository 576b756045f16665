-- Runs: one command of a project's live production release, run once as its own process (by
-- hand, `POST /api/v1/projects/{id}/runs`, or by a schedule). Its output is a log like a
-- build's, its exit code its outcome.
CREATE TABLE runs (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    -- The schedule that asked for it, NULL for a run started by hand. No foreign key: the
    -- schedules table comes with migration 0010 (a deleted schedule leaves its runs' history).
    schedule_id     uuid,
    -- The release it ran in (the live production deployment and its build), as the
    -- deploy-engine reports it: NULL until it started. Plain ids, no foreign keys: an event
    -- naming a deployment this database does not hold must not make the event unappliable.
    deployment_id   uuid,
    build_id        uuid,
    command         text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt         integer NOT NULL DEFAULT 1,
    exit_code       integer,
    error           text,
    timeout_s       integer NOT NULL CHECK (timeout_s > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- `POST /api/v1/runs/{id}/cancel` of a running run: it ends `cancelled` once stopped.
    cancel_requested_at timestamptz
);
CREATE INDEX runs_project_created_idx ON runs (project_id, created_at DESC);
CREATE INDEX runs_schedule_idx ON runs (schedule_id) WHERE schedule_id IS NOT NULL;

