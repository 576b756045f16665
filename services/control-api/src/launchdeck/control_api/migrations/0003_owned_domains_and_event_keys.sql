-- Domains are owned, and the event inbox knows events by their identity.

-- Which project owns each custom domain. `projects.domains` keeps the order a project listed
-- them in; this table makes a host belong to one project at most, whatever the letter case, and
-- the unique index is what keeps two concurrent requests from both claiming it.
CREATE TABLE project_domains (
    host            text NOT NULL,
    project_id      uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX project_domains_host_idx ON project_domains (lower(host));
CREATE INDEX project_domains_project_idx ON project_domains (project_id);

-- Domains listed before ownership existed: of the projects listing a host, the oldest keeps
-- it; the others lose it (from their list too, so the edge stops routing it for them at their
-- next deployment).
INSERT INTO project_domains (host, project_id)
SELECT lower(listed.host), listed.project_id
FROM (
    SELECT d.host, p.id AS project_id, p.created_at, d.position
    FROM projects p, unnest(p.domains) WITH ORDINALITY AS d(host, position)
) AS listed
ORDER BY listed.created_at, listed.project_id, listed.position
ON CONFLICT DO NOTHING;

UPDATE projects p
SET domains = ARRAY(
    SELECT d.host
    FROM unnest(p.domains) WITH ORDINALITY AS d(host, position)
    WHERE EXISTS (
        SELECT 1 FROM project_domains pd
        WHERE pd.project_id = p.id AND lower(pd.host) = lower(d.host)
    )
    ORDER BY d.position
)
WHERE cardinality(p.domains) > 0;

-- The inbox was keyed by stream sequence, which starts again at 1 when EVENTS is recreated:
-- every new event was then taken for one already applied. It is now keyed by the publisher's
-- Nats-Msg-Id (`id:<msg id>`), or for an event without one by its sequence and the time the
-- stream stored it (`seq:<n>@<time>`). Rows of the old scheme stay as `legacy:<n>`, matching
-- nothing new.
ALTER TABLE processed_events DROP CONSTRAINT processed_events_pkey;
ALTER TABLE processed_events ADD COLUMN event_key text;
UPDATE processed_events SET event_key = 'legacy:' || stream_seq::text;
ALTER TABLE processed_events ALTER COLUMN event_key SET NOT NULL;
ALTER TABLE processed_events ADD PRIMARY KEY (stream, event_key);
