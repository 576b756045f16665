"""Publishing a generation job end to end, every service a process: the done items of a job
(inserted as the generator leaves them) are rendered, stored as a build artifact of the project
and deployed by the deploy-engine — the pages are served by the edge at the project's URL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.e2e.support import Api, create_project
from tests.support import GitRepoFactory

STEPS: list[dict[str, Any]] = [
    {"name": "outline", "prompt": "Outline {{ service }}.", "output": "json", "schema": {}},
    {"name": "page", "prompt": "Write the page for {{ service }} in {{ area }}."},
]


async def insert_job(database_url: str, project_id: str, template_id: str) -> str:
    """A job of three items in two groups: two done (Markdown pages), one failed."""
    job_id = uuid.uuid4()
    items = [
        (0, "done", "Acme", "Repair", "Austin", "# Repair in Austin\n\nFast <script>x()</script>"),
        (1, "done", "Bolt", "Wiring", "Dallas", "# Wiring in Dallas\n\n* safe\n* quick"),
        (2, "failed", "Bolt", "Lights", "Austin", None),
    ]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO generation_jobs
                   (id, project_id, template_id, template_version, status, model, parameters,
                    limits, group_by, variable_names, total, done, failed)
               VALUES ($1, $2, $3, 1, 'succeeded',
                       '{"provider": "ollama", "name": "llama3.2"}', '{}', '{}', 'business',
                       '{business,service,area}', 3, 2, 1)""",
            job_id,
            uuid.UUID(project_id),
            uuid.UUID(template_id),
        )
        for idx, status, business, service, area, markdown in items:
            await conn.execute(
                """INSERT INTO generation_items (job_id, idx, status, variables, grp, outputs)
                   VALUES ($1, $2, $3,
                           jsonb_build_object('business', $4::text, 'service', $5::text,
                                              'area', $6::text),
                           $4::text,
                           CASE WHEN $7::text IS NULL THEN NULL
                                ELSE jsonb_build_object('outline', '{}'::jsonb, 'page', $7::text)
                           END)""",
                job_id,
                idx,
                status,
                business,
                service,
                area,
                markdown,
            )
    finally:
        await conn.close()
    return str(job_id)


async def test_published_pages_are_served_at_the_project_url(
    api: Api, database_url: str, make_git_repo: GitRepoFactory
) -> None:
    """POST …/publish → the deployment goes active and the edge serves the site: the root
    index, a group index, each done item's page (rendered, its script removed), the sitemap."""
    project = await create_project(api, "pages", make_git_repo({"README.md": "generated"}))
    status, template = await api.call("POST", "/templates", {"name": "pages", "steps": STEPS})
    assert status == 201, template
    job_id = await insert_job(database_url, project["id"], template["id"])

    status, published = await api.call("POST", f"/generations/{job_id}/publish", {})
    assert status == 202, published
    assert published["pages"] == 2
    deployment = await api.wait_deployment(published["deployment_id"])
    assert deployment["url"].startswith("http://pages.localhost")

    status, page = await api.edge_get("pages", "/acme/repair-austin/")
    assert status == 200, page
    assert "<h1>Repair in Austin</h1>" in page
    assert "<script" not in page
    status, page = await api.edge_get("pages", "/bolt/wiring-dallas/")
    assert status == 200
    assert "<li>safe</li>" in page
    status, index = await api.edge_get("pages", "/")
    assert status == 200
    assert 'href="acme/"' in index
    assert 'href="bolt/"' in index
    status, group = await api.edge_get("pages", "/bolt/")
    assert status == 200
    assert 'href="wiring-dallas/"' in group
    assert "lights" not in group  # the failed item has no page
    status, sitemap = await api.edge_get("pages", "/sitemap.xml")
    assert status == 200
    assert "/acme/repair-austin/</loc>" in sitemap
    assert "<loc>http://pages.localhost:" in sitemap
