-- Generation jobs: a pinned template version run over many items by the generator. The rows
-- of `generation_items` are the checkpoint: the generator claims pending items and settles
-- their results through the control-api (`ld.rpc.generation.*`), so a restarted or
-- redelivered job resumes from them and never calls a finished item again.
CREATE TABLE generation_jobs (
    id                  uuid PRIMARY KEY,
    project_id          uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    template_id         uuid NOT NULL,
    template_version    integer NOT NULL,
    -- The version a job pinned outlives nothing: versions are immutable and never deleted
    -- while a job uses them.
    FOREIGN KEY (template_id, template_version) REFERENCES template_versions (template_id, version),
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                                          'budget_exceeded', 'cancelled')),
    -- The request as the API took it (`contracts.api.GenerationModel`, `…Parameters`,
    -- `…Limits`): the model names an env var for its API key, never the key.
    model               jsonb NOT NULL,
    parameters          jsonb NOT NULL,
    limits              jsonb NOT NULL,
    -- The price resolved at creation (the job's own, else the operator's table), USD per
    -- million tokens, and the budget as columns the settle statement reads.
    price_input_per_mtok  numeric(20, 6) NOT NULL DEFAULT 0,
    price_output_per_mtok numeric(20, 6) NOT NULL DEFAULT 0,
    budget_usd          numeric(20, 6),
    budget_tokens       bigint,
    group_by            text,
    cache               boolean NOT NULL DEFAULT true,
    -- The variable names in first-seen order: the export's `variables.<name>` columns.
    variable_names      text[] NOT NULL DEFAULT '{}',
    -- Totals, kept by the settle statement (never recounted from the items).
    total               integer NOT NULL CHECK (total >= 0),
    done                integer NOT NULL DEFAULT 0,
    failed              integer NOT NULL DEFAULT 0,
    cached              integer NOT NULL DEFAULT 0,
    tokens_in           bigint NOT NULL DEFAULT 0,
    tokens_out          bigint NOT NULL DEFAULT 0,
    cost_usd            numeric(20, 6) NOT NULL DEFAULT 0,
    error               text,
    attempt             integer NOT NULL DEFAULT 0,
    created_by          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX generation_jobs_project_created_idx ON generation_jobs (project_id, created_at DESC, id DESC);

CREATE TABLE generation_items (
    job_id              uuid NOT NULL REFERENCES generation_jobs(id) ON DELETE CASCADE,
    idx                 integer NOT NULL CHECK (idx >= 0),
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'done', 'failed')),
    variables           jsonb NOT NULL,
    -- The value of the job's `group_by` variable, as text (NULL without one).
    grp                 text,
    -- Step name → output (text, or the parsed value of a json step).
    outputs             jsonb,
    error               text,
    tokens_in           integer NOT NULL DEFAULT 0,
    tokens_out          integer NOT NULL DEFAULT 0,
    cost_usd            numeric(20, 6) NOT NULL DEFAULT 0,
    cached              boolean NOT NULL DEFAULT false,
    attempts            integer NOT NULL DEFAULT 0,
    finished_at         timestamptz,
    PRIMARY KEY (job_id, idx)
);
-- What a claim reads: the next pending items of a job in index order, however many are done.
CREATE INDEX generation_items_pending_idx ON generation_items (job_id, idx) WHERE status = 'pending';
-- Exports and publish read a job's items group by group.
CREATE INDEX generation_items_group_idx ON generation_items (job_id, grp, idx);

-- The response cache, across jobs: one answer per call fingerprint
-- (`launchdeck.libs.generation.fingerprint`: provider, model, rendered messages, parameters
-- with a fixed seed or temperature 0). The tokens are what the original call used; an item
-- served from it costs 0.
CREATE TABLE generation_cache (
    fingerprint         text PRIMARY KEY,
    content             text NOT NULL,
    tokens_in           integer NOT NULL DEFAULT 0,
    tokens_out          integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now()
);
