-- API tokens and the audit log.
--
-- api_tokens: one row per minted token, keyed by its JWT `jti`. The token value itself is never
-- stored (only a SHA-256 of it, for forensics); every request looks its jti up here, so a
-- revoked (revoked_at set), expired or unknown token is refused. Rows are kept after revocation
-- so the audit log can still name who did what.
CREATE TABLE api_tokens (
    id              uuid PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    scopes          text[] NOT NULL CHECK (
                        cardinality(scopes) > 0
                        AND (scopes = ARRAY['admin']::text[]
                             OR scopes <@ ARRAY['read', 'deploy', 'write']::text[])),
    -- No foreign key: a deleted project leaves its tokens behind as dead rows (they are refused,
    -- as the project they name is gone) and the audit keeps naming them.
    project_id      uuid,
    token_sha256    bytea,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    CHECK ((scopes = ARRAY['admin']::text[]) = (project_id IS NULL))
);
CREATE INDEX api_tokens_created_idx ON api_tokens (created_at DESC, id DESC);

-- Who (token id and name) did what to which project, and when. No foreign keys: entries outlive
-- the tokens and projects they name. `detail` never holds a secret value.
CREATE TABLE audit_log (
    id              uuid PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    token_id        uuid,
    token_name      text NOT NULL,
    action          text NOT NULL,
    project_id      uuid,
    target          text,
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_id      text
);
CREATE INDEX audit_log_project_at_idx ON audit_log (project_id, at DESC, id DESC);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
