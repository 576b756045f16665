-- Git-host push webhooks: the project's webhook secret sealed at rest, whether tags build, and
-- the deliveries already received (so a replayed delivery never builds twice).

-- The webhook secret is a credential (whoever holds it can start builds): it is sealed like an
-- env var value (AES-256-GCM under LAUNCHDECK_SECRET_KEY, `domain/sealing.py`, associated data
-- naming the project and `webhook-secret`). `webhook_secret` keeps the plaintext of projects
-- created before this migration only, until `launchdeck-control-api secrets rotate` seals it
-- (it reads either meanwhile); new and rotated secrets are stored sealed, the plaintext NULL.
ALTER TABLE projects ALTER COLUMN webhook_secret DROP NOT NULL;
ALTER TABLE projects
    ADD COLUMN webhook_secret_nonce      bytea CHECK (octet_length(webhook_secret_nonce) = 12),
    ADD COLUMN webhook_secret_ciphertext bytea,
    ADD COLUMN webhook_secret_key_id     text,
    ADD COLUMN webhook_secret_rotated_at timestamptz,
    -- Whether a pushed tag builds (a preview build of the tagged commit); off by default.
    ADD COLUMN build_tags                boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT projects_webhook_secret_check CHECK (
        (webhook_secret_ciphertext IS NULL) = (webhook_secret_nonce IS NULL)
        AND (webhook_secret_ciphertext IS NULL) = (webhook_secret_key_id IS NULL)
        AND (webhook_secret IS NOT NULL OR webhook_secret_ciphertext IS NOT NULL));

-- One row per verified delivery (a request whose signature did not verify leaves nothing).
-- Unique per project, provider and delivery id: GitHub's X-GitHub-Delivery is unique anyway,
-- but GitLab's event UUID is shared by every hook one event fires (two projects on one
-- repository), and a generic sender's id (or the body's hash) is only unique to that sender.
CREATE TABLE webhook_deliveries (
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    provider        text NOT NULL CHECK (provider IN ('github', 'gitlab', 'gitea', 'generic')),
    delivery_id     text NOT NULL CHECK (length(delivery_id) BETWEEN 1 AND 200),
    received_at     timestamptz NOT NULL DEFAULT now(),
    event           text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('queued', 'ignored')),
    reason          text,
    build_id        uuid REFERENCES builds(id) ON DELETE SET NULL,
    PRIMARY KEY (project_id, provider, delivery_id)
);
-- Pruning by age, and the builds' foreign key (a deleted build clears its deliveries' link).
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);
CREATE INDEX webhook_deliveries_build_idx ON webhook_deliveries (build_id);
