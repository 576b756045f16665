-- Env vars of a project, encrypted at rest (AES-256-GCM, `domain/sealing.py`): the value is
-- never stored in plaintext, only its nonce, its ciphertext (GCM tag included) and the id of
-- the key it was sealed under, so a key rotation can find what is still under an old key.

CREATE TABLE env_vars (
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (key ~ '^[A-Z_][A-Z0-9_]*$' AND length(key) <= 256),
    targets         text[] NOT NULL CHECK (
                        cardinality(targets) > 0
                        AND targets <@ ARRAY['build', 'preview', 'production']::text[]),
    nonce           bytea NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext      bytea NOT NULL,
    key_id          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, key)
);
-- `secrets rotate` looks for the values still under another key than the current one.
CREATE INDEX env_vars_key_id_idx ON env_vars (key_id);

-- A redeploy (`POST /api/v1/projects/{id}/redeploy`) is a trigger of its own in the history.
ALTER TABLE deployments DROP CONSTRAINT deployments_trigger_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_trigger_check
    CHECK (trigger IN ('build', 'api', 'rollback', 'redeploy'));
