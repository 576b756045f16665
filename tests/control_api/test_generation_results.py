"""A generation job's results over HTTP: exports (JSONL, CSV, Parquet) read back, a big export
streamed, the per-group manifests (zip and one), and publish → a succeeded build whose artifact
holds the rendered site and a pending deployment with its deploy command.

Jobs and items are inserted with SQL, as the generator would have left them."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import tracemalloc
import uuid
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pyarrow.parquet as pq
from nats.js import JetStreamContext

from launchdeck.contracts.api import TemplateCreate, TemplateStep
from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import DeployRequested
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS, SUBJECT_DEPLOY_JOBS
from launchdeck.control_api.domain.templates import create_template
from launchdeck.control_api.store.records import Project
from launchdeck.libs.objects import download
from tests.control_api.helpers import new_project
from tests.control_api.support import Api, token, unique
from tests.polling import eventually

STEPS = [
    TemplateStep(
        name="outline",
        prompt="Outline {{ service }} in {{ area }} for {{ business }}.",
        output="json",
        schema={"type": "object"},
    ),
    TemplateStep(name="page", prompt="Write {{ steps.outline.output.title }}."),
]
VARIABLES = ["business", "service", "area"]


@dataclass(frozen=True)
class Job:
    id: uuid.UUID
    project: Project

    @property
    def path(self) -> str:
        return f"/api/v1/generations/{self.id}"


def _item(
    idx: int, business: str | None, service: str, area: str, status: str, **more: Any
) -> dict[str, Any]:
    return {
        "idx": idx,
        "status": status,
        "variables": {"business": business, "service": service, "area": area},
        "grp": business,
        **more,
    }


def page(title: str, extra: str = "") -> dict[str, Any]:
    return {"outline": {"title": title, "sections": [1, 2]}, "page": f"# {title}\n\nText.{extra}"}


ITEMS = [
    _item(
        0,
        "Acme Plumbing",
        "Repair",
        "Austin",
        "done",
        outputs=page("Repair in Austin", "\n\n<script>alert('x')</script>"),
        tokens_in=10,
        tokens_out=100,
        cost_usd=Decimal("0.0015"),
        cached=False,
    ),
    _item(
        1,
        "Acme Plumbing",
        "Install",
        "Dallas",
        "done",
        outputs=page("Install in Dallas"),
        tokens_in=11,
        tokens_out=90,
        cost_usd=Decimal("0"),
        cached=True,
    ),
    _item(
        2,
        "Acme Plumbing",
        "Drains",
        "Austin",
        "failed",
        error="HTTP 401: bad key",
        tokens_in=0,
        tokens_out=0,
    ),
    _item(
        3,
        "Bolt Electric",
        "Wiring",
        "Austin",
        "done",
        outputs=page("Wiring in Austin"),
        tokens_in=12,
        tokens_out=80,
        cost_usd=Decimal("0.002"),
    ),
    _item(4, "Bolt Electric", "Lights", "Dallas", "pending"),
]


async def make_job(
    pool: asyncpg.Pool,
    items: list[dict[str, Any]],
    *,
    project: Project | None = None,
    group_by: str | None = "business",
) -> Job:
    project = project or await new_project(pool)
    async with pool.acquire() as conn:
        template = await create_template(
            conn, TemplateCreate(name=unique("tpl"), steps=STEPS), created_by="tests"
        )
        job_id = uuid.uuid4()
        await conn.execute(
            """INSERT INTO generation_jobs
                   (id, project_id, template_id, template_version, status, model, parameters,
                    limits, group_by, variable_names, total, done, failed)
               VALUES ($1, $2, $3, $4, 'running', $5, '{}', '{}', $6, $7, $8, $9, $10)""",
            job_id,
            project.id,
            template.id,
            template.version,
            {"provider": "ollama", "name": "llama3.2"},
            group_by,
            VARIABLES,
            len(items),
            sum(i["status"] == "done" for i in items),
            sum(i["status"] == "failed" for i in items),
        )
        await conn.executemany(
            """INSERT INTO generation_items
                   (job_id, idx, status, variables, grp, outputs, error, tokens_in, tokens_out,
                    cost_usd, cached)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
            [
                (
                    job_id,
                    i["idx"],
                    i["status"],
                    i["variables"],
                    i["grp"] if group_by else None,
                    i.get("outputs"),
                    i.get("error"),
                    i.get("tokens_in", 0),
                    i.get("tokens_out", 0),
                    i.get("cost_usd", Decimal(0)),
                    i.get("cached", False),
                )
                for i in items
            ],
        )
    return Job(job_id, project)


@dataclass
class File:
    status: int
    headers: Any
    data: bytes


async def download_file(api: Api, path: str, **params: str) -> File:
    """GET a file as bytes (`Api.call` would parse NDJSON as one JSON document)."""
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.client.get(path, params=params, headers=headers) as resp:
        return File(resp.status, resp.headers, await resp.read())


async def test_jsonl_export_has_every_item_in_index_order(api: Api, pool: asyncpg.Pool) -> None:
    """One JSON object per item, by index: status, group, variables, outputs, tokens, cost."""
    job = await make_job(pool, ITEMS)
    reply = await download_file(api, f"{job.path}/export", format="jsonl")
    assert reply.status == 200, reply.data
    assert reply.headers["Content-Type"] == "application/x-ndjson"
    disposition = reply.headers["Content-Disposition"]
    assert disposition == f'attachment; filename="generation-{job.id}.jsonl"'
    lines = [json.loads(line) for line in reply.data.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    first = lines[0]
    assert first["status"] == "done"
    assert first["group"] == "Acme Plumbing"
    assert first["variables"] == {
        "business": "Acme Plumbing",
        "service": "Repair",
        "area": "Austin",
    }
    assert first["outputs"]["outline"] == {"title": "Repair in Austin", "sections": [1, 2]}
    assert first["outputs"]["page"].startswith("# Repair in Austin")
    assert (first["tokens_in"], first["tokens_out"], first["cost_usd"]) == (10, 100, 0.0015)
    assert lines[1]["cached"] is True
    assert (lines[2]["status"], lines[2]["error"], lines[2]["outputs"]) == (
        "failed",
        "HTTP 401: bad key",
        {},
    )
    assert lines[4]["status"] == "pending"
    # Only the done ones.
    done = await download_file(api, f"{job.path}/export", status="done")
    assert [json.loads(line)["index"] for line in done.data.splitlines()] == [0, 1, 3]


async def test_csv_export_has_a_column_per_variable_and_step(api: Api, pool: asyncpg.Pool) -> None:
    """CSV: fixed columns, `variables.<name>` in the job's order, `outputs.<step>` (a json step's
    value as JSON text), one row per item."""
    job = await make_job(pool, ITEMS)
    reply = await download_file(api, f"{job.path}/export", format="csv")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(reply.data.decode(), newline="")))
    assert rows[0] == [
        "index",
        "status",
        "group",
        "variables.business",
        "variables.service",
        "variables.area",
        "outputs.outline",
        "outputs.page",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "cached",
        "error",
    ]
    assert len(rows) == 6
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["variables.service"] == "Repair"
    assert json.loads(first["outputs.outline"]) == {"title": "Repair in Austin", "sections": [1, 2]}
    assert first["outputs.page"].startswith("# Repair in Austin\n\nText.")
    assert (first["tokens_in"], first["cost_usd"], first["cached"]) == ("10", "0.0015", "false")
    failed = dict(zip(rows[0], rows[3], strict=True))
    assert (failed["status"], failed["error"], failed["outputs.page"]) == (
        "failed",
        "HTTP 401: bad key",
        "",
    )


async def test_parquet_export_reads_back_with_pyarrow(api: Api, pool: asyncpg.Pool) -> None:
    """Parquet: typed fixed columns, a text column per variable and step, the values."""
    job = await make_job(pool, ITEMS)
    reply = await download_file(api, f"{job.path}/export", format="parquet")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert reply.headers["Content-Disposition"].endswith(f'generation-{job.id}.parquet"')
    table = pq.read_table(io.BytesIO(reply.data))
    assert table.schema.names == [
        "index",
        "status",
        "group",
        "variables.business",
        "variables.service",
        "variables.area",
        "outputs.outline",
        "outputs.page",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "cached",
        "error",
    ]
    types = {f.name: str(f.type) for f in table.schema}
    assert (types["index"], types["tokens_in"], types["cost_usd"], types["cached"]) == (
        "int64",
        "int64",
        "double",
        "bool",
    )
    assert types["outputs.outline"] == "string"
    rows = table.to_pylist()
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[3]["group"] == "Bolt Electric"
    assert rows[3]["variables.service"] == "Wiring"
    assert json.loads(rows[3]["outputs.outline"])["title"] == "Wiring in Austin"
    assert rows[3]["outputs.page"] == "# Wiring in Austin\n\nText."
    assert (rows[3]["tokens_out"], rows[3]["cost_usd"], rows[3]["cached"]) == (80, 0.002, False)
    assert (rows[2]["error"], rows[2]["outputs.page"]) == ("HTTP 401: bad key", None)


async def test_unknown_format_or_status_is_422_and_others_see_nothing(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A format or status the API lacks names its field; another project's token gets 404."""
    job = await make_job(pool, ITEMS)
    bad = await api.call("GET", f"{job.path}/export", params={"format": "xlsx"})
    assert bad.status == 422
    assert bad.body["errors"][0]["field"] == "format"
    bad_status = await api.call("GET", f"{job.path}/export", params={"status": "running"})
    assert bad_status.status == 422
    assert bad_status.body["errors"][0]["field"] == "status"
    other = token(["read"], project_id=str(uuid.uuid4()))
    for path in ("export", "manifests.zip", "manifests/acme-plumbing"):
        reply = await api.call("GET", f"{job.path}/{path}", token=other)
        assert reply.status == 404, path
    missing = await api.call("GET", f"/api/v1/generations/{uuid.uuid4()}/export")
    assert missing.status == 404


async def _backend_reading(pool: asyncpg.Pool) -> bool:
    """Whether a session of this database sits in an open transaction after reading items
    (the export's cursor, paused while the client does not read)."""
    async with pool.acquire() as conn:
        found: bool = await conn.fetchval(
            """SELECT count(*) > 0 FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND state = 'idle in transaction' AND query LIKE '%FROM generation_items%'"""
        )
    return found


async def test_a_big_export_streams_with_bounded_memory(api: Api, pool: asyncpg.Pool) -> None:
    """20,000 items (~30 MB of JSONL) come chunked: the first bytes arrive while the cursor is
    still open (the rest not read yet), and the server never holds the export in memory."""
    job = await make_job(pool, ITEMS[:1])
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO generation_items
                   (job_id, idx, status, variables, grp, outputs, tokens_in, tokens_out)
               SELECT $1, n, 'done',
                      jsonb_build_object('business', 'B' || (n % 7), 'service', 'S' || n,
                                         'area', 'A'),
                      'B' || (n % 7),
                      jsonb_build_object('outline', jsonb_build_object('title', 'T' || n),
                                         'page', repeat('word ', 300)),
                      5, 50
               FROM generate_series(1, 19999) AS n""",
            job.id,
        )

    async def reading() -> bool:
        return await _backend_reading(pool)

    tracemalloc.start()
    try:
        async with api.client.get(
            f"{job.path}/export",
            params={"format": "jsonl"},
            headers={"Authorization": f"Bearer {api.token}"},
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in resp.headers
            first = await resp.content.readany()
            assert first.startswith(b'{"index":0,')
            # The client holds off: the server is paused mid-cursor, in its transaction.
            await eventually("the export's cursor to be open", reading)
            total, lines = len(first), first.count(b"\n")
            async for chunk in resp.content.iter_any():
                total += len(chunk)
                lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 20_000
    assert total > 30_000_000
    assert peak < total / 4, (peak, total)


async def test_manifests_zip_has_one_manifest_per_group(api: Api, pool: asyncpg.Pool) -> None:
    """The zip holds `<group>/manifest.json` per group (job, items, totals) and each item's
    outputs; one group's manifest is served alone by its slug; an unknown group is 404."""
    job = await make_job(pool, ITEMS)
    reply = await download_file(api, f"{job.path}/manifests.zip")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(reply.data))
    names = archive.namelist()
    assert "acme-plumbing/manifest.json" in names
    assert "bolt-electric/manifest.json" in names
    assert "acme-plumbing/repair-austin/page.md" in names
    assert "acme-plumbing/repair-austin/outline.json" in names
    acme = json.loads(archive.read("acme-plumbing/manifest.json"))
    assert acme["group"] == "Acme Plumbing"
    assert acme["job"]["id"] == str(job.id)
    assert (acme["job"]["provider"], acme["job"]["model"]) == ("ollama", "llama3.2")
    assert acme["job"]["template_version"] == 1
    assert [i["index"] for i in acme["items"]] == [0, 1, 2]
    assert acme["items"][0]["variables"]["service"] == "Repair"
    assert acme["items"][0]["outputs"]["page"]["kind"] == "text"
    assert acme["totals"]["done"] == 2
    assert acme["totals"]["failed"] == 1
    assert acme["totals"]["tokens_in"] == 21
    bolt = json.loads(archive.read("bolt-electric/manifest.json"))
    assert [(i["index"], i["status"]) for i in bolt["items"]] == [(3, "done"), (4, "pending")]
    page_md = archive.read("bolt-electric/wiring-austin/page.md").decode()
    assert page_md == "# Wiring in Austin\n\nText."

    one = await api.call("GET", f"{job.path}/manifests/bolt-electric")
    assert one.status == 200
    assert one.body == bolt
    unknown = await api.call("GET", f"{job.path}/manifests/no-such-group")
    assert unknown.status == 404
    ungrouped = await make_job(pool, ITEMS, group_by=None)
    none = await api.call("GET", f"/api/v1/generations/{ungrouped.id}/manifests/acme-plumbing")
    assert none.status == 404
    flat_zip = await download_file(api, f"/api/v1/generations/{ungrouped.id}/manifests.zip")
    flat = zipfile.ZipFile(io.BytesIO(flat_zip.data))
    assert len(json.loads(flat.read("manifest.json"))["items"]) == 5


async def _outbox_deploy(pool: asyncpg.Pool, deployment_id: str) -> DeployRequested:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT subject, payload FROM outbox WHERE id = $1", uuid.UUID(deployment_id)
        )
    assert row is not None
    assert row["subject"] == SUBJECT_DEPLOY_JOBS
    return decode(row["payload"], DeployRequested)


async def test_publish_stores_the_site_as_a_build_and_deploys_it(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """Publish → a succeeded build (trigger generation) whose artifact holds a page per done
    item (sanitised), group indexes, an index and the sitemap; a pending deployment whose
    ld.jobs.deploy command carries that artifact."""
    job = await make_job(pool, ITEMS)
    reply = await api.call("POST", f"{job.path}/publish", {})
    assert reply.status == 202, reply.body
    published = reply.body
    assert published["pages"] == 3
    assert published["project_id"] == str(job.project.id)
    assert reply.headers["Location"] == f"/api/v1/deployments/{published['deployment_id']}"

    build = (await api.call("GET", f"/api/v1/builds/{published['build_id']}")).body
    assert build["status"] == "succeeded"
    assert build["trigger"] == "generation"
    assert (
        build["commit_message"]
        == f"generation {job.id} (template " + build["commit_message"].split("(template ", 1)[1]
    )
    assert build["commit_message"].endswith(" v1)")
    assert build["deployment_id"] == published["deployment_id"]
    artifact = build["artifact"]
    assert artifact["kind"] == "static"
    assert artifact["key"] == f"{published['build_id']}.tar.gz"

    out = io.BytesIO()
    info = await download(js, OBJECT_STORE_ARTIFACTS, artifact["key"], out)
    assert info.size == artifact["size"]
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        files = {
            m.name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    assert {
        "index.html",
        "acme-plumbing/index.html",
        "bolt-electric/index.html",
        "acme-plumbing/repair-austin/index.html",
        "acme-plumbing/install-dallas/index.html",
        "bolt-electric/wiring-austin/index.html",
        "sitemap.xml",
    } <= set(files)
    assert not any("drains" in name or "lights" in name for name in files)  # failed, pending
    repair = files["acme-plumbing/repair-austin/index.html"]
    assert "<h1>Repair in Austin</h1>" in repair
    assert "<script" not in repair
    assert "alert(" not in repair
    assert 'href="repair-austin/"' in files["acme-plumbing/index.html"]
    base = f"http://{job.project.name}.localhost:8000/"
    assert f"<loc>{base}acme-plumbing/repair-austin/</loc>" in files["sitemap.xml"]

    deployment = (await api.call("GET", f"/api/v1/deployments/{published['deployment_id']}")).body
    assert (deployment["status"], deployment["build_id"]) == ("pending", published["build_id"])
    command = await _outbox_deploy(pool, published["deployment_id"])
    assert command.build_id == published["build_id"]
    assert command.project_name == job.project.name
    assert command.artifact.key == artifact["key"]
    assert command.artifact.sha256 == artifact["sha256"]
    assert command.artifact.kind == "static"
    logs = await api.call("GET", f"/api/v1/builds/{published['build_id']}/logs")
    assert f"Published generation {job.id}" in logs.body


async def test_publish_to_another_project_needs_deploy_on_both(
    api: Api, pool: asyncpg.Pool
) -> None:
    """The target project's deploy scope is needed too: a token of the job's project alone
    does not see another project; an admin publishes there (to its preview if asked)."""
    job = await make_job(pool, ITEMS)
    target = await new_project(pool)
    reader = token(["read"], project_id=str(job.project.id))
    refused = await api.call("POST", f"{job.path}/publish", {}, token=reader)
    assert refused.status == 403
    deployer = token(["deploy"], project_id=str(job.project.id))
    elsewhere = await api.call(
        "POST", f"{job.path}/publish", {"project": target.name}, token=deployer
    )
    assert elsewhere.status == 404
    target_only = token(["deploy"], project_id=str(target.id))
    hidden = await api.call(
        "POST", f"{job.path}/publish", {"project": target.name}, token=target_only
    )
    assert hidden.status == 404
    reply = await api.call(
        "POST", f"{job.path}/publish", {"project": target.name, "environment": "preview"}
    )
    assert reply.status == 202, reply.body
    assert reply.body["project_id"] == str(target.id)
    command = await _outbox_deploy(pool, reply.body["deployment_id"])
    assert (command.project_name, command.environment) == (target.name, "preview")


async def test_publish_without_done_items_or_with_a_json_step_is_refused(
    api: Api, pool: asyncpg.Pool
) -> None:
    """No done item → 409; a json step or an unknown step → 422 naming `step`; nothing built."""
    job = await make_job(pool, [i for i in ITEMS if i["status"] != "done"])
    empty = await api.call("POST", f"{job.path}/publish", {})
    assert empty.status == 409
    assert "no done item" in empty.body["detail"]
    full = await make_job(pool, ITEMS, project=job.project)
    as_json = await api.call("POST", f"{full.path}/publish", {"step": "outline"})
    assert as_json.status == 422
    assert as_json.body["errors"][0]["field"] == "step"
    unknown = await api.call("POST", f"{full.path}/publish", {"step": "summary"})
    assert unknown.status == 422
    builds = await api.call("GET", f"/api/v1/projects/{job.project.id}/builds")
    assert builds.body["items"] == []
    assert msgspec.json.encode(empty.body)  # a problem document
