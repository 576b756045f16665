-- Schedules: cron expressions that fire an action (a build, a command of the live release, an
-- HTTP call to the live app), and one row per fired tick.
CREATE TABLE schedules (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name            text NOT NULL,
    cron            text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC',
    enabled         boolean NOT NULL DEFAULT true,
    -- The action as the API took it (`contracts.api.ScheduleAction`, tagged by "type").
    action          jsonb NOT NULL,
    -- The next tick to fire (UTC); NULL while disabled.
    next_run_at     timestamptz,
    -- When the scheduler last fired it.
    last_run_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);
-- The scheduler's query: enabled schedules whose next tick has come.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;

-- One row per fired tick. The primary key is the idempotency key: the row is inserted in the
-- same transaction that creates the build or requests the run, so a tick is never fired twice,
-- whichever replica evaluates it (a new leader re-evaluating a tick finds its row).
CREATE TABLE schedule_ticks (
    schedule_id     uuid NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    tick_at         timestamptz NOT NULL,
    fired_at        timestamptz NOT NULL,
    -- queued: the build or run was requested (its own status says more); running: the HTTP
    -- call is under way; then succeeded | failed; skipped: not fired (a run still active).
    outcome         text NOT NULL
                    CHECK (outcome IN ('queued', 'running', 'succeeded', 'failed', 'skipped')),
    -- Earlier ticks that were due too (an outage) and were not fired separately.
    missed_ticks    integer NOT NULL DEFAULT 0,
    build_id        uuid REFERENCES builds(id) ON DELETE SET NULL,
    run_id          uuid REFERENCES runs(id) ON DELETE SET NULL,
    detail          text,
    -- An HTTP tick still `running` past this was cut off (its scheduler stopped): failed.
    deadline_at     timestamptz,
    settled_at      timestamptz,
    PRIMARY KEY (schedule_id, tick_at)
);
CREATE INDEX schedule_ticks_running_idx ON schedule_ticks (deadline_at) WHERE outcome = 'running';
CREATE INDEX schedule_ticks_build_idx ON schedule_ticks (build_id) WHERE build_id IS NOT NULL;
CREATE INDEX schedule_ticks_run_idx ON schedule_ticks (run_id) WHERE run_id IS NOT NULL;
