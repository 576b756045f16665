"""Publishing a generation job: its done items rendered as a static site (`libs.site`), stored as
a build artifact of the target project and deployed through the normal path.

The site is written to a temporary directory from the items read group by group off the store's
cursor (one page per done item whose page step holds Markdown; an index per group, a root
index, sitemap.xml), packed as a release tarball (`libs.tarball`, the build-worker's format),
and stored in the `artifacts` object store under the build's key by the caller's
`store_artifact` (NATS is the transport's business). Then, in one transaction: a build row that
is already `succeeded` (trigger `generation`, its commit message naming the job and template
version, the artifact's key, size and sha256, kind `static`), a short build log saying what was
published, and the deployment with its `ld.jobs.deploy` command in the outbox
(`deployments.start_deployment`, as for any succeeded build). The deploy-engine then fetches
the artifact and serves it at the project's URL like any static build.

A page step must be a `text` step: a `json` step has no Markdown to render (422 `step`).
The sitemap's URLs are absolute: the project's first domain (production) or its
`<name>.<base domain>` (a preview: `<build8>-<name>.<base domain>`), with the scheme and port
of the edge (LAUNCHDECK_EDGE_URL).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from launchdeck.contracts.api import GenerationPublished
from launchdeck.contracts.messages import Artifact, LogLine
from launchdeck.contracts.statuses import Environment
from launchdeck.control_api.domain.deployments import start_deployment
from launchdeck.control_api.domain.errors import Conflict, Invalid, NotFound
from launchdeck.control_api.domain.generation_export import export_item, step_output
from launchdeck.control_api.store import build_logs, builds, projects
from launchdeck.control_api.store import generation_results as store
from launchdeck.control_api.store.generation_results import ResultsJob
from launchdeck.control_api.store.records import Build, Project
from launchdeck.libs.exports import ExportItem
from launchdeck.libs.site import SiteBuilder, SiteSummary, package_site
from launchdeck.libs.tarball import Package

BUILD_TRIGGER = "generation"
# Rows per cursor fetch, rendered together in a worker thread (pages are written to disk).
PUBLISH_CHUNK_ROWS = 500

# Stores the packed site under the build's artifact key; returns what the store holds.
StoreArtifact = Callable[[uuid.UUID, Package], Awaitable[Artifact]]


def page_step(job: ResultsJob, requested: str | None) -> str:
    """The step whose output is each page's Markdown: `requested`, else the template's last
    step; Invalid (`step`) for a step the template lacks or a `json` step."""
    step = requested or str(job.steps[-1]["name"])
    output = step_output(job, step)
    if output is None:
        names = ", ".join(str(s["name"]) for s in job.steps)
        raise Invalid.field(
            "step", f"template {job.template_name!r} has no step {step!r} ({names})"
        )
    if output != "text":
        raise Invalid.field(
            "step", f"step {step!r} outputs {output}; a page is the Markdown of a text step"
        )
    return step


def site_url(
    project: Project,
    environment: Environment,
    build_id: uuid.UUID,
    *,
    base_domain: str,
    edge_url: str,
) -> str:
    """Where the deploy-engine will serve this build (the sitemap's base)."""
    if environment == "preview":
        host = f"{str(build_id)[:8]}-{project.name}.{base_domain}"
    elif project.domains:
        host = project.domains[0]
    else:
        host = f"{project.name}.{base_domain}"
    edge = urlsplit(edge_url)
    default_port = 443 if edge.scheme == "https" else 80
    port = f":{edge.port}" if edge.port and edge.port != default_port else ""
    return f"{edge.scheme or 'http'}://{host}{port}/"


def _add_all(builder: SiteBuilder, items: list[ExportItem]) -> None:
    for item in items:
        builder.add(item)


async def render_site(
    conn: Any, job: ResultsJob, builder: SiteBuilder, *, chunk_rows: int = PUBLISH_CHUNK_ROWS
) -> SiteSummary:
    """Feed the job's done items, group by group, to `builder` (a chunk per worker thread) and
    finish the site."""
    chunks = store.item_chunks(conn, job.id, order="group", status="done", chunk_rows=chunk_rows)
    async with aclosing(chunks):
        async for rows in chunks:
            await asyncio.to_thread(
                _add_all, builder, [export_item(r, job.variable_names) for r in rows]
            )
    return await asyncio.to_thread(builder.finish)


def _log_lines(texts: list[str], at: datetime) -> bytes:
    lines = [
        LogLine(seq=n, ts=at, stream="system", line=text) for n, text in enumerate(texts, start=1)
    ]
    return zlib.compress(msgspec.json.Encoder().encode_lines(lines))


async def publish(
    pool: Any,
    job: ResultsJob,
    project: Project,
    *,
    step: str,
    environment: Environment,
    base_domain: str,
    edge_url: str,
    store_artifact: StoreArtifact,
) -> GenerationPublished:
    """Render, store and deploy (module docstring). Conflict when the job has no done item, or
    none of them has Markdown in `step`."""
    async with pool.acquire() as conn:
        if await store.count_items(conn, job.id, status="done") == 0:
            raise Conflict(f"generation {job.id} has no done item to publish")
    build_id = uuid.uuid4()
    base_url = site_url(project, environment, build_id, base_domain=base_domain, edge_url=edge_url)
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ld-publish-"))
    try:
        builder = SiteBuilder(
            workdir / "site",
            base_url=base_url,
            page_step=step,
            group_by=job.group_by,
            site_title=f"{job.template_name}",
        )
        async with pool.acquire() as conn:
            summary = await render_site(conn, job, builder)
        if not summary.pages:
            raise Conflict(
                f"no done item of generation {job.id} has Markdown in step {step!r} to publish"
            )
        package = await asyncio.to_thread(package_site, summary.directory, workdir / "site.tar.gz")
        artifact = await store_artifact(build_id, package)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    texts = [
        f"Published generation {job.id} (template {job.template_name} "
        f"v{job.template_version}, step {step})",
        f"{len(summary.pages)} pages in {summary.groups} groups, {summary.files} files; "
        f"{len(summary.skipped)} done items without Markdown in {step!r} skipped",
        f"Stored {artifact.key} ({artifact.size} bytes, sha256 {artifact.sha256})",
        f"Deploying to {environment} at {base_url}",
    ]
    async with pool.acquire() as conn, conn.transaction():
        build = await _insert_build(conn, job, project, build_id, environment, artifact)
        deployment = await start_deployment(conn, project, build, environment, trigger="build")
        await builds.set_deployment(conn, build.id, deployment.id)
        compressed = _log_lines(texts, datetime.now(UTC))
        await build_logs.save(conn, build.id, lines=len(texts), compressed=compressed)
    return GenerationPublished(
        job_id=job.id,
        project_id=project.id,
        build_id=build.id,
        deployment_id=deployment.id,
        pages=len(summary.pages),
    )


async def _insert_build(
    conn: Any,
    job: ResultsJob,
    project: Project,
    build_id: uuid.UUID,
    environment: Environment,
    artifact: Artifact,
) -> Build:
    """The build row, `succeeded` from the start: nothing is left to build."""
    number = await projects.take_build_number(conn, project.id)
    if number is None:  # deleted since it was resolved
        raise NotFound(f"no project {project.name!r}")
    await builds.insert(
        conn,
        build_id=build_id,
        project_id=project.id,
        number=number,
        ref=f"generation/{job.id}",
        trigger=BUILD_TRIGGER,
        deploy=True,
        environment=environment,
        commit_message=(
            f"generation {job.id} (template {job.template_name} v{job.template_version})"
        ),
    )
    now = datetime.now(UTC)
    return await builds.apply_status(
        conn,
        build_id,
        status="succeeded",
        step=None,
        attempt=1,
        error=None,
        commit_sha=None,
        commit_message=None,
        artifact=artifact,
        started_at=now,
        finished_at=now,
    )
