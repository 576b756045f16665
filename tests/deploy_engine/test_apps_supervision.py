"""Supervision: a crashed app restarts with backoff; a crash loop makes its deployment
`unhealthy` (an event) while the engine keeps trying, and `active` again once it serves; other
projects are not affected. `GET /api/health/<project>` says how the app is."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from launchdeck.deploy_engine.health import make_app
from tests.deploy_engine.app_support import (
    AppEngine,
    deployment_events,
    new_build,
    read_app_logs,
    wait_statuses,
)
from tests.deploy_engine.sample_apps import node_app
from tests.polling import eventually


async def test_a_crashed_app_restarts_on_the_same_port(app_engine: AppEngine) -> None:
    """The process exits: it is started again (a new pid, the same port and route), and its log
    says why and when."""
    app = app_engine
    _, events = await app.deploy(new_build(), node_app("v1"))
    web_instance = app.web()
    assert web_instance.process is not None
    first_pid, port = web_instance.process.leader, web_instance.record.port
    async with read_app_logs(app.engine.js, app.project_id) as logs:
        assert await app.get("/crash") == (200, "bye")
        await eventually(
            "a new process",
            lambda: (
                web_instance.process is not None
                and web_instance.process.leader != first_pid
                and web_instance.ready
            ),
        )
        assert await app.get("/") == (200, "v1")
        assert web_instance.record.port == port
        await eventually(
            "the crash in the app log",
            lambda: (
                "⚠ The web process exited with code 1; starting it again in 0.05s"
                in logs.lines(process="web")
            ),
        )
    assert web_instance.restarts == 1
    statuses = [
        e.status
        for e in await deployment_events(app.engine.js, app.project_id, events[-1].deployment_id)
    ]
    assert statuses == ["activating", "active"]  # one crash is not a crash loop


async def test_a_crash_loop_is_reported_unhealthy_then_active_again(
    app_engine: AppEngine, unused_tcp_port: int
) -> None:
    """While the app cannot start (3 crashes within the window here) its deployment is reported
    `unhealthy` with the reason and its output; the engine keeps restarting it with a capped
    backoff; once it starts again the deployment is `active` again. The health endpoint says
    503 meanwhile, 200 after. Another project's app serves throughout."""
    app = app_engine
    other = await _other_project(app)
    _, events = await app.deploy(new_build(), node_app("v1"))
    deployment = events[-1].deployment_id
    web_instance = app.web()
    handler = app.engine.handler
    runner = web.AppRunner(make_app(handler.store, handler.sites, handler.probe, app.fleet))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    try:
        health = f"http://127.0.0.1:{unused_tcp_port}/api/health/{app.project}"
        assert (await _get_json(health))[0] == 200

        crash_file = app.apps_dir / web_instance.record.id / "home" / "crash"
        crash_file.write_text("please")  # every new start exits with code 3 from now on
        assert await app.get("/crash") == (200, "bye")
        unhealthy = await wait_statuses(
            app.engine.js, app.project_id, deployment, ["activating", "active", "unhealthy"]
        )
        error = unhealthy[-1].error or ""
        assert "the web process crashed 3 times within 30s" in error
        assert "exited with code 3" in error
        assert "boom: v1 cannot start (crash file present)" in error
        status, body = await _get_json(health)
        assert status == 503
        assert body["healthy"] is False
        assert body["processes"][0]["restarts"] >= 3
        assert await other.get("/") == (200, "other v1")  # another project: untouched

        restarts = web_instance.restarts
        await eventually(
            "more restarts (backoff capped)", lambda: web_instance.restarts >= restarts + 2
        )
        crash_file.unlink()
        active = await wait_statuses(
            app.engine.js,
            app.project_id,
            deployment,
            ["activating", "active", "unhealthy", "active"],
        )
        assert active[-1].url == events[-1].url
        assert await app.get("/") == (200, "v1")
        status, body = await _get_json(health)
        assert (status, body["healthy"]) == (200, True)
    finally:
        await runner.cleanup()


async def _other_project(app: AppEngine) -> AppEngine:
    """Another project's app on the same engine."""
    engine = replace(app.engine, project_id=new_build(), project=f"other-{new_build()[:8]}")
    other = replace(app, engine=engine)
    _, events = await other.deploy(new_build(), node_app("other v1"))
    assert events[-1].status == "active", events[-1].error
    return other


async def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, dict(await resp.json())
