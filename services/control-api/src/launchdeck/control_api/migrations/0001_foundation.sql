-- Foundation: projects, builds and their logs, deployments, the outbox and the event inbox.

CREATE TABLE projects (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    repo_url        text NOT NULL,
    branch          text NOT NULL DEFAULT 'main',
    build_config    jsonb NOT NULL DEFAULT '{}'::jsonb,
    domains         text[] NOT NULL DEFAULT '{}',
    webhook_secret  text NOT NULL,
    next_build_number integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE builds (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number          integer NOT NULL,
    ref             text NOT NULL,
    commit_sha      text,
    commit_message  text,
    trigger         text NOT NULL DEFAULT 'api',
    status          text NOT NULL DEFAULT 'queued',
    step            text,
    error           text,
    attempt         integer NOT NULL DEFAULT 1,
    deploy          boolean NOT NULL DEFAULT true,
    environment     text NOT NULL DEFAULT 'production'
                    CHECK (environment IN ('production', 'preview')),
    artifact_key    text,
    artifact_sha256 text,
    artifact_size   bigint,
    artifact_kind   text,
    start_command   text,
    health_path     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    UNIQUE (project_id, number)
);
CREATE INDEX builds_project_created_idx ON builds (project_id, created_at DESC);
CREATE INDEX builds_status_idx ON builds (status);

-- The complete log of a finished build, zlib-compressed NDJSON of LogLine.
CREATE TABLE build_logs (
    build_id        uuid PRIMARY KEY REFERENCES builds(id) ON DELETE CASCADE,
    lines           integer NOT NULL,
    compressed      bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deployments (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    build_id        uuid NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    environment     text NOT NULL CHECK (environment IN ('production', 'preview')),
    status          text NOT NULL DEFAULT 'pending',
    url             text,
    error           text,
    previous_deployment_id uuid REFERENCES deployments(id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_project_created_idx ON deployments (project_id, created_at DESC);
CREATE INDEX deployments_build_idx ON deployments (build_id);
CREATE INDEX deployments_status_idx ON deployments (project_id, environment, status);

ALTER TABLE builds ADD COLUMN deployment_id uuid REFERENCES deployments(id) ON DELETE SET NULL;

CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    subject         text NOT NULL,
    payload         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX outbox_created_idx ON outbox (created_at);

-- Events already applied (inbox): the consumer records the event's stream sequence in the same
-- transaction as its effect, so a redelivered event is applied once.
CREATE TABLE processed_events (
    stream          text NOT NULL,
    stream_seq      bigint NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, stream_seq)
);
