-- Prompt templates for the generator: a named template with immutable, numbered versions.
-- A PUT adds version n+1; nothing updates a version, so a generation job that pins
-- (template_id, version) renders exactly what was there when it started.
CREATE TABLE templates (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE template_versions (
    template_id     uuid NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    -- The steps as the API took them (`contracts.api.TemplateStep` list): name, prompt,
    -- output (text | json) and, for json, the JSON Schema of the answer.
    steps           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The name of the token that wrote this version (the audit log has the rest).
    created_by      text,
    PRIMARY KEY (template_id, version)
);
