"""The platform rides out a NATS restart (as an operator upgrading NATS does): no service exits,
a build asked for while NATS is down runs once it is back, and nothing is lost on the way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio

from launchdeck.contracts.subjects import (
    CONSUMER_BUILD_WORKERS,
    SERVICE_BUILD_WORKER,
    SERVICE_DEPLOY_ENGINE,
    SERVICE_GENERATOR,
    STREAM_BUILDS,
    max_deliveries_advisory_subject,
)
from launchdeck.devservers import free_port
from launchdeck.libs.jetstream import connect
from tests.e2e.support import (
    Api,
    Platform,
    create_project,
    deploy,
    launch_platform,
    read_ws,
)
from tests.libs.support import RestartableNats
from tests.polling import eventually
from tests.support import GitRepoFactory, commit_files

LINES = 120
SITE_SCRIPT = """\
import os
os.makedirs("dist", exist_ok=True)
for i in range(1, {lines} + 1):
    print(f"line {{i}}", flush=True)
with open("dist/index.html", "w") as f:
    f.write("<h1>" + open("title.txt").read().strip() + "</h1>")
"""


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableNats]:
    """This module's own NATS (the session's server is shared and must not be restarted)."""
    store = tmp_path_factory.mktemp("restart-nats")
    nats = RestartableNats(store / "jetstream", free_port(), store / "nats.log")
    nats.start()
    try:
        yield nats
    finally:
        nats.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, own_nats: RestartableNats
) -> AsyncIterator[Platform]:
    async with launch_platform(
        tmp_path_factory.mktemp("nats-restart"),
        database_url,
        own_nats.url,
        nats_logs=[own_nats.log_file],
    ) as p:
        yield p


async def readiness(api: Api) -> tuple[int, dict[str, Any]]:
    async with api.session.get(f"{api.platform.api_url}/ready") as resp:
        return resp.status, json.loads(await resp.text())


async def metrics(api: Api) -> str:
    async with api.session.get(f"{api.platform.api_url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout_s)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


def assert_all_running(platform: Platform) -> None:
    for name, proc in platform.processes.items():
        assert proc.poll() is None, f"{name} exited:\n{platform.logs(name)[-3000:]}"


def assert_quiet_logs(platform: Platform) -> None:
    """An outage is warned about, not reported as errors with tracebacks."""
    for name in platform.processes:
        for line in platform.logs(name).splitlines():
            assert '"level": "error"' not in line, f"{name}: {line}"
            assert not line.startswith(("Traceback", "ERROR:")), f"{name}: {line}"


async def test_a_build_requested_while_nats_is_down_runs_once_it_is_back(
    api: Api, platform: Platform, own_nats: RestartableNats, make_git_repo: GitRepoFactory
) -> None:
    """NATS stops and starts again (same port and store): the API takes builds meanwhile (202
    each, kept in the outbox), which then each run once, and the one deployed is served; its log
    is whole (1..N); no command is stored twice in BUILDS (Nats-Msg-Id); /metrics says NATS was
    away and reports the consumers again after; the core subscriptions (WebSocket events,
    max-deliveries advisories, micro services) work again; no service process exited."""
    repo = make_git_repo(
        {"build.py": SITE_SCRIPT.format(lines=LINES), "title.txt": "Before the restart"}
    )
    settings = {"build_command": "python3 build.py", "output_dir": "dist"}
    await create_project(api, "upgrade", repo, build=settings)
    await deploy(api, "upgrade")
    assert "<h1>Before the restart</h1>" in (await api.edge_get("upgrade"))[1]
    # More projects whose builds are asked for during the outage too (not deployed).
    others = [f"upgrade-{i}" for i in range(1, 4)]
    for name in others:
        other_repo = make_git_repo({"build.py": SITE_SCRIPT.format(lines=3), "title.txt": name})
        await create_project(api, name, other_repo, build=settings)
    commands_before = await stored_commands(own_nats)

    # A viewer of the project's events, subscribed before the restart (a core subscription).
    mux = await api.session.ws_connect(f"{platform.api_url}/api/v1/ws?token={platform.token}")
    channel = "project:upgrade:events"
    await mux.send_str(json.dumps({"type": "subscribe", "channel": channel}))
    assert await next_frame(mux, 10) == {"type": "subscribed", "channel": channel}

    await own_nats.astop()
    _, ready = await eventually("the API sees NATS gone", lambda: _not_ready(api))
    assert ready["checks"]["nats"] != "ok"

    commit_files(repo, {"title.txt": "After the restart"}, "new title")
    status, build = await api.call("POST", "/projects/upgrade/builds", {})
    assert status == 202, build
    assert build["status"] == "queued"
    queued = []
    for name in others:
        status, other = await api.call("POST", f"/projects/{name}/builds", {"deploy": False})
        assert status == 202, other
        queued.append(other["id"])
    page = await metrics(api)
    assert f"launchdeck_outbox_pending {1 + len(others)}" in page  # kept until NATS is back
    assert "launchdeck_nats_up 0" in page
    assert "launchdeck_consumer_pending{" not in page  # not read: absent, not stale

    await own_nats.astart()
    finished = await api.wait_build(build["id"], timeout_s=45)
    assert (finished["status"], finished["attempt"]) == ("succeeded", 1), finished
    for build_id in queued:
        done = await api.wait_build(build_id, timeout_s=45)
        assert (done["status"], done["attempt"]) == ("succeeded", 1), done
    # Each command stored once in the BUILDS work queue: one message per build asked for.
    assert await stored_commands(own_nats) == commands_before + 1 + len(others)
    await api.wait_build_deployment(build["id"], timeout_s=30)
    status, body = await api.edge_get("upgrade")
    assert status == 200
    assert "<h1>After the restart</h1>" in body
    page = await metrics(api)
    assert "launchdeck_outbox_pending 0" in page
    assert "launchdeck_outbox_lag_seconds 0" in page
    assert "launchdeck_nats_up 1" in page
    # Read as the control-api's own NATS user (allowed CONSUMER.INFO): every job taken.
    assert 'launchdeck_consumer_pending{consumer="build-workers",stream="BUILDS"} 0' in page
    assert (await readiness(api))[0] == 200

    # The whole log, once: replayed over the WebSocket and from the HTTP endpoint.
    lines, end = await asyncio.wait_for(read_ws(api.session, api.log_ws_url(build["id"])), 30)
    assert end["status"] == "succeeded"
    assert [f["seq"] for f in lines] == list(range(1, len(lines) + 1))
    text = [f["line"] for f in lines]
    assert [t for t in text if t.startswith("line ")] == [f"line {i}" for i in range(1, LINES + 1)]
    status, http_log = await api.call("GET", f"/builds/{build['id']}/logs")
    assert status == 200
    assert http_log.splitlines() == text

    # The events viewer subscribed before the restart saw this build's events after it.
    async def build_succeeded_event() -> bool:
        frame = await next_frame(mux, 10)
        event = frame.get("event", {})
        return frame["type"] == "event" and (event.get("build_id"), event.get("status")) == (
            build["id"],
            "succeeded",
        )

    await eventually("the build's events on the old subscription", build_succeeded_event)
    await mux.close()

    await _check_core_subscriptions(api, own_nats)
    assert_all_running(platform)
    assert_quiet_logs(platform)


async def stored_commands(own_nats: RestartableNats) -> int:
    """How many messages the BUILDS stream has ever stored (its last sequence number)."""
    nc = await connect(own_nats.url, name="launchdeck-tests")
    try:
        info = await nc.jetstream().stream_info(STREAM_BUILDS)
        return int(info.state.last_seq)
    finally:
        await nc.drain()


async def _not_ready(api: Api) -> tuple[int, dict[str, Any]] | None:
    status, body = await readiness(api)
    return (status, body) if status == 503 else None


async def _check_core_subscriptions(api: Api, own_nats: RestartableNats) -> None:
    """The micro services answer pings, and the control-api's max-deliveries watcher (a queue
    subscription made before the restart) still takes advisories."""
    nc = await connect(own_nats.url, name="launchdeck-tests")
    try:
        for service in (SERVICE_BUILD_WORKER, SERVICE_DEPLOY_ENGINE, SERVICE_GENERATOR):
            reply = await nc.request(f"$SRV.PING.{service}", b"", timeout=5)
            assert msgspec.json.decode(reply.data)["name"] == service
        # An advisory for a command that is not there (any more): the watcher counts it "gone".
        advisory = {
            "stream": STREAM_BUILDS,
            "consumer": CONSUMER_BUILD_WORKERS,
            "stream_seq": 10**9,
            "deliveries": 3,
        }
        subject = max_deliveries_advisory_subject(STREAM_BUILDS, CONSUMER_BUILD_WORKERS)
        await nc.publish(subject, msgspec.json.encode(advisory))
        await nc.flush()
    finally:
        await nc.drain()
    gone = 'launchdeck_abandoned_jobs_total{outcome="gone",stream="BUILDS"} 1'
    await eventually("the advisory handled", lambda: _metrics_show(api, gone), timeout_s=10)


async def _metrics_show(api: Api, line: str) -> bool:
    return line in (await metrics(api)).splitlines()
