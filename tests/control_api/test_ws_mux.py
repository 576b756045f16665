"""`GET /api/v1/ws`, the multiplexed socket: build logs and project events by channel
(generation progress: test_ws_generation.py); bad requests answer an error frame and never
close the socket."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildStatusChanged, DeploymentStatusChanged
from launchdeck.contracts.subjects import (
    build_event_subject,
    deployment_event_subject,
)
from tests.control_api.log_support import (
    ADMIN,
    AUTH,
    LogPublisher,
    create_project_build,
    receive_frame,
)
from tests.control_api.support import Api, token

MUX = "/api/v1/ws"


async def subscribe(
    ws: aiohttp.ClientWebSocketResponse, channel: str, **extra: Any
) -> dict[str, Any]:
    await ws.send_str(json.dumps({"type": "subscribe", "channel": channel, **extra}))
    return await receive_frame(ws)


async def test_logs_and_project_events_arrive_on_their_channels(
    api: Api, js: JetStreamContext
) -> None:
    """One socket: a build's log (1..N, end) and its project's build/deployment events."""
    project, build_id = await create_project_build(api)
    _, other_build_id = await create_project_build(api)
    events_channel = f"project:{project['name']}:events"  # a name works as well as an id
    logs_channel = f"build:{build_id}:logs"
    ws = await api.client.ws_connect(f"{MUX}?token={ADMIN}")
    assert await subscribe(ws, events_channel) == {"type": "subscribed", "channel": events_channel}
    assert await subscribe(ws, logs_channel) == {"type": "subscribed", "channel": logs_channel}

    worker = LogPublisher(js, build_id)
    await worker.lines(30, per_batch=8)
    building = BuildStatusChanged(
        build_id=build_id, project_id=project["id"], status="building", at=datetime.now(UTC)
    )
    await js.publish(build_event_subject(project["id"], build_id), encode(building))
    # Another project's event must not reach this channel.
    other = BuildStatusChanged(
        build_id=other_build_id, project_id=str(uuid.uuid4()), status="failed", at=building.at
    )
    await js.publish(build_event_subject(other.project_id, other_build_id), encode(other))
    deployment_id = str(uuid.uuid4())
    active = DeploymentStatusChanged(
        deployment_id=deployment_id,
        project_id=project["id"],
        build_id=build_id,
        environment="production",
        status="active",
        url="http://example.localhost",
        at=building.at,
    )
    await js.publish(deployment_event_subject(project["id"], deployment_id), encode(active))
    await worker.lines(30, per_batch=8)
    await worker.finish("succeeded")

    frames: list[dict[str, Any]] = []
    while sum(f["type"] in {"end", "event"} for f in frames) < 3:
        frames.append(await receive_frame(ws))
    logs = [f for f in frames if f["type"] == "log"]
    assert [f["seq"] for f in logs] == list(range(1, 61))
    assert all(f["channel"] == logs_channel and f["build_id"] == build_id for f in logs)
    assert [f for f in frames if f["type"] == "end"] == [
        {"type": "end", "build_id": build_id, "status": "succeeded", "channel": logs_channel}
    ]
    events = [f for f in frames if f["type"] == "event"]
    assert [(e["channel"], e["kind"]) for e in events] == [
        (events_channel, "build"),
        (events_channel, "deployment"),
    ]
    assert events[0]["event"]["status"] == "building"
    assert events[0]["event"]["build_id"] == build_id
    assert events[1]["event"]["status"] == "active"
    assert events[1]["event"]["url"] == "http://example.localhost"

    # The finished log channel is gone; the events channel is still there until unsubscribed.
    await ws.send_str(json.dumps({"type": "unsubscribe", "channel": events_channel}))
    assert await receive_frame(ws) == {"type": "unsubscribed", "channel": events_channel}
    await ws.send_str(json.dumps({"type": "unsubscribe", "channel": logs_channel}))
    assert (await receive_frame(ws))["type"] == "error"
    await ws.close()


async def test_log_channel_resumes_from_seq(api: Api, js: JetStreamContext) -> None:
    """`from_seq` on a log subscription sends that line onwards, then the end."""
    _, build_id = await create_project_build(api)
    worker = LogPublisher(js, build_id)
    await worker.lines(50, per_batch=20)
    await worker.finish("failed")
    ws = await api.client.ws_connect(MUX, headers=AUTH)
    channel = f"build:{build_id}:logs"
    assert (await subscribe(ws, channel, from_seq=41))["type"] == "subscribed"
    frames = [await receive_frame(ws) for _ in range(11)]
    assert [f["seq"] for f in frames[:10]] == list(range(41, 51))
    assert frames[10] == {
        "type": "end",
        "build_id": build_id,
        "status": "failed",
        "channel": channel,
    }
    await ws.close()


async def test_bad_requests_get_an_error_and_the_socket_stays_open(api: Api) -> None:
    """Malformed, unknown or forbidden requests each get one error frame; nothing is closed."""
    project, build_id = await create_project_build(api)
    other_project, _ = await create_project_build(api)
    # A read token of another project: this build does not exist for it.
    scoped = token(["read"], project_id=other_project["id"])
    ws = await api.client.ws_connect(f"{MUX}?token={scoped}")
    bad = [
        "not json",
        json.dumps({"type": "dance"}),
        json.dumps({"type": "subscribe"}),
        json.dumps({"type": "subscribe", "channel": "weather:today"}),
        json.dumps({"type": "subscribe", "channel": "build:not-a-uuid:logs"}),
        json.dumps({"type": "subscribe", "channel": f"build:{uuid.uuid4()}:logs"}),
        json.dumps({"type": "subscribe", "channel": f"build:{build_id}:logs"}),
        json.dumps({"type": "subscribe", "channel": f"project:{project['name']}:events"}),
        json.dumps({"type": "subscribe", "channel": "project:no-such-project:events"}),
        json.dumps({"type": "subscribe", "channel": f"build:{build_id}:logs", "from_seq": 0}),
        json.dumps({"type": "unsubscribe", "channel": "generation:" + str(uuid.uuid4())}),
    ]
    for message in bad:
        await ws.send_str(message)
        frame = await receive_frame(ws)
        assert frame["type"] == "error", (message, frame)
        assert frame["message"], message
    assert "weather:today" in (await _error_for(ws, bad[3]))["message"]
    assert (await _error_for(ws, bad[6]))["channel"] == f"build:{build_id}:logs"

    # Still open and serving; subscribing twice to one channel is an error too.
    own = f"project:{other_project['id']}:events"
    assert await subscribe(ws, own) == {"type": "subscribed", "channel": own}
    assert (await subscribe(ws, own))["type"] == "error"
    await ws.close()


async def _error_for(ws: aiohttp.ClientWebSocketResponse, message: str) -> dict[str, Any]:
    await ws.send_str(message)
    frame = await receive_frame(ws)
    assert frame["type"] == "error"
    return frame
