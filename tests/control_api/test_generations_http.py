"""Generation jobs over HTTP: a job and its items and its GenerationRequested commit together
(from a matrix, inline rows, or a JSONL/CSV upload streamed in); the template version is
pinned; bad requests are 422s naming the field; lists page; the dry run renders and estimates
without storing; cancel stops a job once (409 after) and tells the generators; another
project's token sees nothing."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import (
    GenerationCancelRequested,
    GenerationProgress,
    GenerationRequested,
)
from launchdeck.contracts.subjects import (
    STREAM_GENERATIONS,
    SUBJECT_GENERATION_CANCEL,
    SUBJECT_GENERATION_JOBS,
    generation_event_subject,
)
from launchdeck.control_api.api.pagination import encode_cursor
from launchdeck.libs.outbox import OutboxRelay
from tests.control_api.support import Api, Reply, token, unique

OUTLINE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
}
STEPS: list[dict[str, Any]] = [
    {
        "name": "outline",
        "prompt": "Outline a page: {{ service }} in {{ area }}.",
        "output": "json",
        "schema": OUTLINE_SCHEMA,
    },
    {"name": "page", "prompt": "Write {{ steps.outline.output.title }} for {{ area }}."},
]
MODEL = {"provider": "ollama", "name": "llama3.2"}
MATRIX = {"service": ["plumbing", "heating"], "area": ["Lyon", "Nantes", "Lille"]}


async def new_template(api: Api, steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = {"name": unique("gen"), "steps": steps or STEPS}
    reply = await api.call("POST", "/api/v1/templates", body)
    assert reply.status == 201, reply.body
    return dict(reply.body)


async def setup(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """A project and a template."""
    return await api.create_project(unique("gen")), await new_template(api)


def spec(template: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"template": template["name"], "model": MODEL}
    if "rows" not in fields and "variables" not in fields:
        body["variables"] = MATRIX
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def file_spec(template: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A spec whose items come in an uploaded file."""
    body = spec(template, **fields)
    body.pop("variables", None)
    return body


async def create(api: Api, project: dict[str, Any], body: dict[str, Any]) -> Reply:
    return await api.call("POST", f"/api/v1/projects/{project['id']}/generations", body)


async def upload(
    api: Api,
    project: dict[str, Any],
    body: dict[str, Any],
    data: bytes,
    *,
    filename: str = "rows.jsonl",
    content_type: str = "application/octet-stream",
    path: str = "generations",
) -> Reply:
    form = aiohttp.FormData()
    form.add_field("spec", json.dumps(body), content_type="application/json")
    form.add_field("rows", data, filename=filename, content_type=content_type)
    return await api.call("POST", f"/api/v1/projects/{project['id']}/{path}", data=form)


async def items(api: Api, job_id: str, query: str = "") -> list[dict[str, Any]]:
    reply = await api.call("GET", f"/api/v1/generations/{job_id}/items?limit=200{query}")
    assert reply.status == 200, reply.body
    return list(reply.body["items"])


def field_of(reply: Reply) -> str:
    assert reply.status == 422, reply.body
    assert reply.content_type.startswith("application/problem+json")
    return str(reply.body["errors"][0]["field"])


async def test_create_from_a_matrix_stores_the_job_its_items_and_its_command(
    api: Api, pool: asyncpg.Pool
) -> None:
    """202 with a queued job pinned to the template's latest version (Location: its URL); one
    pending item per combination, first key outermost, grouped by `group_by`; the
    GenerationRequested waits in the outbox keyed by the job id."""
    project, template = await setup(api)
    body = spec(
        template,
        group_by="service",
        parameters={"max_tokens": 300, "seed": 7},
        limits={"concurrency": 8, "budget_usd": "2.5"},
    )
    reply = await create(api, project, body)
    assert reply.status == 202, reply.body
    job = reply.body
    assert reply.headers["Location"] == f"/api/v1/generations/{job['id']}"
    assert (job["status"], job["total"], job["pending"], job["done"], job["failed"]) == (
        "queued",
        6,
        6,
        0,
        0,
    )
    assert (job["template_id"], job["template_name"], job["template_version"]) == (
        template["id"],
        template["name"],
        1,
    )
    assert job["project_id"] == project["id"]
    assert job["model"] == {**MODEL, "base_url": None, "api_key_env": None, "options": {}}
    assert job["parameters"] == {"temperature": None, "max_tokens": 300, "seed": 7}
    assert job["limits"]["budget_usd"] == "2.5"
    assert job["limits"]["concurrency"] == 8
    assert (job["group_by"], job["cache"], job["cost_usd"], job["created_by"]) == (
        "service",
        True,
        "0",
        "tests",
    )
    got = await items(api, job["id"])
    assert [(i["index"], i["variables"], i["group"], i["status"]) for i in got] == [
        (0, {"service": "plumbing", "area": "Lyon"}, "plumbing", "pending"),
        (1, {"service": "plumbing", "area": "Nantes"}, "plumbing", "pending"),
        (2, {"service": "plumbing", "area": "Lille"}, "plumbing", "pending"),
        (3, {"service": "heating", "area": "Lyon"}, "heating", "pending"),
        (4, {"service": "heating", "area": "Nantes"}, "heating", "pending"),
        (5, {"service": "heating", "area": "Lille"}, "heating", "pending"),
    ]
    assert got[0]["outputs"] == {}
    assert got[0]["cost_usd"] == "0"
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT subject, payload FROM outbox WHERE id = $1", uuid.UUID(job["id"])
        )
        stored = await conn.fetchrow(
            "SELECT variable_names, budget_usd FROM generation_jobs WHERE id = $1",
            uuid.UUID(job["id"]),
        )
    assert row["subject"] == SUBJECT_GENERATION_JOBS
    command = decode(row["payload"], GenerationRequested)
    assert (command.job_id, command.project_id) == (job["id"], project["id"])
    assert list(stored["variable_names"]) == ["service", "area"]
    assert stored["budget_usd"] == Decimal("2.5")
    assert (await api.call("GET", f"/api/v1/generations/{job['id']}")).body == job


async def test_the_relay_publishes_the_command_on_the_generations_stream(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The outbox relay puts GenerationRequested on `ld.jobs.generate` (GENERATIONS stream),
    `Nats-Msg-Id` = the job id."""
    relay = OutboxRelay(pool, js)
    while await relay.relay_once():  # what earlier tests left behind
        pass
    project, template = await setup(api)
    job = (await create(api, project, spec(template))).body
    assert await relay.relay_once() == 1
    state = (await js.stream_info(STREAM_GENERATIONS)).state
    stored = await js.get_msg(STREAM_GENERATIONS, state.last_seq)
    assert stored.subject == SUBJECT_GENERATION_JOBS
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == job["id"]
    assert stored.data is not None
    assert decode(stored.data, GenerationRequested).job_id == job["id"]


async def test_create_from_inline_rows(api: Api) -> None:
    """Rows are items in their order, any JSON value kept; names in first-seen order; an item
    without the group_by variable has no group."""
    project, template = await setup(api)
    rows = [
        {"service": "plumbing", "area": "Lyon", "extras": ["24/7", "free quote"]},
        {"service": "heating", "area": "Nantes", "rank": 2},
        {"area": "Lille", "service": 3},
    ]
    reply = await create(api, project, spec(template, rows=rows, group_by="service"))
    assert reply.status == 202, reply.body
    got = await items(api, reply.body["id"])
    assert [i["variables"] for i in got] == rows
    assert [i["group"] for i in got] == ["plumbing", "heating", "3"]


async def test_create_from_uploaded_jsonl_and_csv(api: Api) -> None:
    """A multipart body: the `spec` part and a `rows` file, JSONL (by name or Content-Type) or
    CSV (a header, then string values)."""
    project, template = await setup(api)
    body = file_spec(template, group_by="area")
    jsonl = b'{"service": "plumbing", "area": "Lyon"}\n\n{"service": "roofing", "area": "Lille"}\n'
    reply = await upload(api, project, body, jsonl)
    assert reply.status == 202, reply.body
    assert reply.body["total"] == 2
    got = await items(api, reply.body["id"])
    assert [(i["variables"]["service"], i["group"]) for i in got] == [
        ("plumbing", "Lyon"),
        ("roofing", "Lille"),
    ]
    by_type = await upload(
        api, project, body, jsonl, filename="upload", content_type="application/x-ndjson"
    )
    assert by_type.status == 202, by_type.body
    csv = b'service,area\r\nplumbing,"Lyon, 3e"\r\nheating,Nantes\r\n'
    reply = await upload(api, project, body, csv, filename="rows.csv")
    assert reply.status == 202, reply.body
    got = await items(api, reply.body["id"])
    assert [i["variables"] for i in got] == [
        {"service": "plumbing", "area": "Lyon, 3e"},
        {"service": "heating", "area": "Nantes"},
    ]
    assert [i["group"] for i in got] == ["Lyon, 3e", "Nantes"]


async def test_a_large_upload_is_streamed_and_inserted_quickly(
    api: Api, pool: asyncpg.Pool
) -> None:
    """100,000 JSONL rows (several MB: past the 1 MiB JSON body limit) make a job of 100,000
    items within seconds."""
    project, template = await setup(api)
    body = file_spec(template, group_by="area")
    data = b"".join(b'{"service": "s%d", "area": "a%d"}\n' % (i, i % 50) for i in range(100_000))
    assert len(data) > 2 * 1024 * 1024
    started = time.monotonic()
    reply = await upload(api, project, body, data)
    elapsed = time.monotonic() - started
    assert reply.status == 202, reply.body
    assert reply.body["total"] == 100_000
    assert elapsed < 30, elapsed
    async with pool.acquire() as conn:
        count, last = await conn.fetchrow(
            "SELECT count(*), max(idx) FROM generation_items WHERE job_id = $1",
            uuid.UUID(reply.body["id"]),
        )
    assert (count, last) == (100_000, 99_999)
    after = encode_cursor(99_998)
    tail = await api.call("GET", f"/api/v1/generations/{reply.body['id']}/items?cursor={after}")
    assert tail.body["items"][0]["variables"] == {"service": "s99999", "area": "a49"}


async def test_bad_requests_are_422s_naming_the_field(api: Api) -> None:
    """Both sources or none, an unknown template or version, a group_by that is no variable,
    too many items, a bad upload line, an upload of an unknown kind: 422 naming the field;
    nothing is stored."""
    project, template = await setup(api)
    cases: list[tuple[dict[str, Any], str]] = [
        (spec(template, rows=[{"service": "a", "area": "b"}], variables=MATRIX), "variables"),
        ({"template": template["name"], "model": MODEL}, "variables"),
        ({**spec(template), "template": "no-such-template"}, "template"),
        ({**spec(template), "template": str(uuid.uuid4())}, "template"),
        (spec(template, template_version=2), "template_version"),
        (spec(template, group_by="city"), "group_by"),
        (spec(template, variables={"a": list(range(1000)), "b": list(range(101))}), "variables"),
        (spec(template, variables={"a": []}), "variables.a"),
        (spec(template, rows=[{"a": 1}, "nope"]), "rows[1]"),
        (spec(template, rows=[{"a": "x\u0000y"}]), "rows[0]"),
        (spec(template, model={"provider": "bedrock", "name": "x"}), "model.provider"),
        (spec(template, limits={"budget_usd": "1.1234567"}), "limits.budget_usd"),
    ]
    for body, field in cases:
        reply = await create(api, project, body)
        assert field_of(reply) == field, (body, reply.body)
    body = file_spec(template)
    bad_line = await upload(api, project, body, b'{"a": 1}\n{"a": \n')
    assert field_of(bad_line) == "rows[1]"
    assert "line 2" in bad_line.body["errors"][0]["message"]
    unknown_kind = await upload(api, project, body, b"a\n1\n", filename="rows.xlsx")
    assert field_of(unknown_kind) == "rows"
    both = await upload(api, project, {**body, "rows": [{"a": 1}]}, b'{"a": 2}\n')
    assert field_of(both) == "rows"
    listed = await api.call("GET", f"/api/v1/projects/{project['id']}/generations")
    assert listed.body["items"] == []


async def test_api_key_env_must_name_a_production_env_var_of_the_project(api: Api) -> None:
    """`model.api_key_env` names a project env var set for production (422 otherwise); the job
    stores the name, never the value."""
    project, template = await setup(api)
    model = {"provider": "openai", "name": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}
    missing = await create(api, project, spec(template, model=model))
    assert field_of(missing) == "model.api_key_env"
    env = f"/api/v1/projects/{project['id']}/env/OPENAI_API_KEY"
    secret = "sk-test-" + uuid.uuid4().hex
    assert (await api.call("PUT", env, {"value": secret, "targets": ["build"]})).status == 200
    wrong_target = await create(api, project, spec(template, model=model))
    assert field_of(wrong_target) == "model.api_key_env"
    assert (await api.call("PUT", env, {"value": secret})).status == 200
    reply = await create(api, project, spec(template, model=model))
    assert reply.status == 202, reply.body
    assert reply.body["model"]["api_key_env"] == "OPENAI_API_KEY"
    assert secret not in json.dumps(reply.body)


async def test_the_template_version_stays_pinned(api: Api) -> None:
    """A job keeps the version it was created with after the template gets a new one; new jobs
    take the latest unless they name a version."""
    project, template = await setup(api)
    first = (await create(api, project, spec(template))).body
    changed = [STEPS[0], {"name": "page", "prompt": "V2 {{ area }}"}]
    put = await api.call("PUT", f"/api/v1/templates/{template['id']}", {"steps": changed})
    assert put.body["version"] == 2
    again = await api.call("GET", f"/api/v1/generations/{first['id']}")
    assert again.body["template_version"] == 1
    latest = (await create(api, project, spec(template))).body
    assert latest["template_version"] == 2
    pinned = (await create(api, project, spec(template, template_version=1))).body
    assert pinned["template_version"] == 1


async def test_lists_page_newest_first_and_items_by_index_and_status(
    api: Api, pool: asyncpg.Pool
) -> None:
    """A project's jobs newest first in pages; a job's items by index in pages, `?status=`
    keeps one status (a bad one is a 422)."""
    project, template = await setup(api)
    made = [(await create(api, project, spec(template))).body["id"] for _ in range(3)]
    path = f"/api/v1/projects/{project['name']}/generations"
    first = await api.call("GET", f"{path}?limit=2")
    assert [j["id"] for j in first.body["items"]] == made[::-1][:2]
    second = await api.call("GET", f"{path}?limit=2&cursor={first.body['next_cursor']}")
    assert [j["id"] for j in second.body["items"]] == made[:1]
    assert second.body["next_cursor"] is None

    job_id = made[0]
    base = f"/api/v1/generations/{job_id}/items"
    page = await api.call("GET", f"{base}?limit=4")
    assert [i["index"] for i in page.body["items"]] == [0, 1, 2, 3]
    rest = await api.call("GET", f"{base}?limit=4&cursor={page.body['next_cursor']}")
    assert [i["index"] for i in rest.body["items"]] == [4, 5]
    assert rest.body["next_cursor"] is None
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE generation_items SET status = 'done', outputs = '{"page": "hi"}'
               WHERE job_id = $1 AND idx IN (1, 4)""",
            uuid.UUID(job_id),
        )
    done = await items(api, job_id, "&status=done")
    assert [(i["index"], i["outputs"]) for i in done] == [(1, {"page": "hi"}), (4, {"page": "hi"})]
    assert [i["index"] for i in await items(api, job_id, "&status=pending")] == [0, 2, 3, 5]
    assert field_of(await api.call("GET", f"{base}?status=nope")) == "status"
    assert field_of(await api.call("GET", f"{base}?cursor=nope")) == "cursor"


async def test_dry_run_renders_and_estimates_without_storing(api: Api, pool: asyncpg.Pool) -> None:
    """Items, calls, tokens (rendered prompt bytes / 3 + 4 per call, plus max_tokens for the
    earlier output a step includes), the cost at the job's price, the first N prompts; no
    job, item or command is stored."""
    project, template = await setup(api)
    body = spec(
        template,
        parameters={"max_tokens": 100},
        price={"input_per_mtok": "1", "output_per_mtok": "2"},
    )
    path = f"/api/v1/projects/{project['id']}/generations/dry-run"
    async with pool.acquire() as conn:
        outbox_before = await conn.fetchval("SELECT count(*) FROM outbox")
    reply = await api.call("POST", f"{path}?prompts=6", body)
    assert reply.status == 200, reply.body
    estimate = reply.body
    assert (estimate["items"], estimate["calls"]) == (6, 12)
    assert len(estimate["prompts"]) == 6
    first = estimate["prompts"][0]
    assert first["index"] == 0
    assert first["variables"] == {"service": "plumbing", "area": "Lyon"}
    assert first["steps"] == [
        {"name": "outline", "output": "json", "prompt": "Outline a page: plumbing in Lyon."},
        {"name": "page", "output": "text", "prompt": "Write <outline>.title for Lyon."},
    ]
    tokens_in = 0
    usd = Decimal(0)
    for prompt in estimate["prompts"]:
        for k, step in enumerate(prompt["steps"]):
            call_in = math.ceil(len(step["prompt"].encode()) / 3) + 4 + (100 if k else 0)
            tokens_in += call_in
            usd += (Decimal(call_in) * 1 + Decimal(100) * 2) / 1_000_000
    assert estimate["tokens_in"] == tokens_in
    assert estimate["tokens_out"] == 12 * 100
    assert Decimal(estimate["cost_usd"]) == usd.quantize(Decimal("0.000001"))
    assert len((await api.call("POST", path, body)).body["prompts"]) == 3
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == outbox_before
        jobs = await conn.fetchval(
            "SELECT count(*) FROM generation_jobs WHERE project_id = $1", uuid.UUID(project["id"])
        )
    assert jobs == 0
    assert field_of(await api.call("POST", f"{path}?prompts=51", body)) == "prompts"
    upload_body = {k: v for k, v in body.items() if k != "variables"}
    uploaded = await upload(
        api,
        project,
        upload_body,
        b'{"service": "a", "area": "b"}\n',
        path="generations/dry-run",
    )
    assert uploaded.status == 200, uploaded.body
    assert uploaded.body["items"] == 1


async def test_dry_run_names_the_item_with_an_undefined_variable(api: Api) -> None:
    """An item that does not render is a 422 on `items[<index>]` with the step, line and
    variable."""
    project, template = await setup(api)
    rows = [{"service": "a", "area": "b"}, {"service": "c"}]
    path = f"/api/v1/projects/{project['id']}/generations/dry-run"
    reply = await api.call("POST", path, spec(template, rows=rows))
    assert field_of(reply) == "items[1]"
    assert reply.body["errors"][0]["message"] == "step 'outline', line 1: 'area' is undefined"


async def test_cancel_stops_the_job_once_and_tells_the_generators(
    api: Api, pool: asyncpg.Pool, nc: Client
) -> None:
    """200 with the job `cancelled` (finished_at set); GenerationCancelRequested goes out on
    core NATS and the final progress event through the outbox; a second cancel is a 409."""
    project, template = await setup(api)
    job = (await create(api, project, spec(template))).body
    heard: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_cancel(msg: Any) -> None:
        await heard.put(msg.data)

    sub = await nc.subscribe(SUBJECT_GENERATION_CANCEL, cb=on_cancel)
    await nc.flush()
    try:
        reply = await api.call("POST", f"/api/v1/generations/{job['id']}/cancel")
        assert reply.status == 200, reply.body
        assert reply.body["status"] == "cancelled"
        assert reply.body["finished_at"] is not None
        assert reply.body["pending"] == 6
        async with asyncio.timeout(5):
            message = decode(await heard.get(), GenerationCancelRequested)
        assert message.job_id == job["id"]
    finally:
        await sub.unsubscribe()
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT payload FROM outbox WHERE subject = $1",
            generation_event_subject(job["id"]),
        )
    progress = decode(row["payload"], GenerationProgress)
    assert (progress.status, progress.total, progress.done, progress.cost_usd) == (
        "cancelled",
        6,
        0,
        "0",
    )
    again = await api.call("POST", f"/api/v1/generations/{job['id']}/cancel")
    assert again.status == 409
    assert "already finished: cancelled" in again.body["detail"]


async def test_another_projects_token_finds_no_job(api: Api) -> None:
    """A token of another project gets 404 for the job, its items, its cancel and the
    project's list; a read token of the project may not create or cancel (403)."""
    project, template = await setup(api)
    job = (await create(api, project, spec(template))).body
    other = token(["read", "deploy", "write"], project_id=str(uuid.uuid4()))
    for method, path in [
        ("GET", f"/api/v1/generations/{job['id']}"),
        ("GET", f"/api/v1/generations/{job['id']}/items"),
        ("POST", f"/api/v1/generations/{job['id']}/cancel"),
        ("GET", f"/api/v1/projects/{project['id']}/generations"),
    ]:
        reply = await api.call(method, path, token=other)
        assert reply.status == 404, (path, reply.body)
    reader = token(["read"], project_id=project["id"])
    refused = await api.call("POST", f"/api/v1/generations/{job['id']}/cancel", token=reader)
    assert refused.status == 403
    read = await api.call("GET", f"/api/v1/generations/{job['id']}", token=reader)
    assert read.status == 200
