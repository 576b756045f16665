"""The `generation:<id>` channel of `/api/v1/ws`: `subscribed`, then the job as it stands (a
GenerationProgress from its row), then the generator's progress events as published; an
unknown job and another project's answer the same error."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from nats.aio.client import Client

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import GenerationProgress
from launchdeck.contracts.subjects import generation_event_subject
from tests.control_api.log_support import AUTH, receive_frame
from tests.control_api.support import Api, token, unique

MUX = "/api/v1/ws"


async def new_job(api: Api) -> dict[str, Any]:
    project = await api.create_project(unique("genws"))
    template = await api.call(
        "POST",
        "/api/v1/templates",
        {"name": unique("genws"), "steps": [{"name": "a", "prompt": "Hi {{ who }}"}]},
    )
    reply = await api.call(
        "POST",
        f"/api/v1/projects/{project['id']}/generations",
        {
            "template": template.body["id"],
            "model": {"provider": "ollama", "name": "llama3.2"},
            "variables": {"who": ["a", "b", "c"]},
        },
    )
    assert reply.status == 202, reply.body
    return dict(reply.body)


async def subscribe(ws: aiohttp.ClientWebSocketResponse, channel: str) -> dict[str, Any]:
    await ws.send_str(json.dumps({"type": "subscribe", "channel": channel}))
    return await receive_frame(ws)


async def test_the_job_as_it_stands_then_live_progress(api: Api, nc: Client) -> None:
    """First the snapshot from the job's row (no rate known: 0 items/s, no ETA), then a
    progress event published on `ld.events.generation.<id>`, forwarded as published."""
    job = await new_job(api)
    channel = f"generation:{job['id']}"
    ws = await api.client.ws_connect(MUX, headers=AUTH)
    assert await subscribe(ws, channel) == {"type": "subscribed", "channel": channel}
    first = await receive_frame(ws)
    assert (first["type"], first["channel"], first["kind"]) == ("event", channel, "generation")
    snapshot = first["event"]
    assert {k: snapshot[k] for k in ("job_id", "project_id", "status", "total", "done")} == {
        "job_id": job["id"],
        "project_id": job["project_id"],
        "status": "queued",
        "total": 3,
        "done": 0,
    }
    assert (snapshot["items_per_s"], snapshot["eta_s"], snapshot["cost_usd"]) == (0.0, None, "0")

    progress = GenerationProgress(
        job_id=job["id"],
        project_id=job["project_id"],
        status="running",
        total=3,
        done=2,
        failed=0,
        tokens_in=120,
        tokens_out=400,
        cost_usd="0.0012",
        items_per_s=4.5,
        eta_s=0.2,
        at=datetime.now(UTC),
    )
    await nc.publish(generation_event_subject(job["id"]), encode(progress))
    live = await receive_frame(ws)
    assert live["kind"] == "generation"
    assert live["event"] == json.loads(encode(progress))
    await ws.close()


async def test_an_unknown_job_and_another_projects_are_the_same_error(api: Api) -> None:
    """A token of another project gets the error a job that does not exist gets (the id
    aside); the socket stays open."""
    job = await new_job(api)
    other = token(["read", "deploy", "write"], project_id=str(uuid.uuid4()))
    ws = await api.client.ws_connect(MUX, headers={"Authorization": f"Bearer {other}"})
    missing = str(uuid.uuid4())
    got = await subscribe(ws, f"generation:{job['id']}")
    absent = await subscribe(ws, f"generation:{missing}")
    assert got["type"] == "error"
    assert json.dumps(got).replace(job["id"], missing) == json.dumps(absent)
    assert "event" not in got
    bad = await subscribe(ws, "generation:not-a-uuid")
    assert bad["type"] == "error"
    await ws.close()
