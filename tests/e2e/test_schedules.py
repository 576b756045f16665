"""Schedules on the whole platform: a scheduled build builds and deploys; a scheduled HTTP call
reaches the live site through the real edge (Caddy) with the project's host, and its answer is
the tick's outcome."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.e2e.support import Api, create_project, deploy, site
from tests.polling import eventually
from tests.support import GitRepoFactory


async def make_due(database_url: str, *schedule_ids: str) -> None:
    """As if each schedule's next tick had just come (rather than wait up to a minute)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE schedules SET next_run_at = date_trunc('minute', now()) "
            "WHERE id = ANY($1::uuid[])",
            list(schedule_ids),
        )
    finally:
        await conn.close()


async def settled(api: Api, schedule_id: str) -> dict[str, Any]:
    """The schedule once its last outcome is final ({} before)."""
    status, body = await api.call("GET", f"/schedules/{schedule_id}")
    assert status == 200, body
    outcome = body["last_outcome"]
    if outcome is None or outcome["status"] in ("queued", "running"):
        return {}
    return dict(body)


async def test_scheduled_http_calls_and_builds(api: Api, make_git_repo: GitRepoFactory) -> None:
    repo = make_git_repo(site("Scheduled"))
    await create_project(api, "cronsite", repo)
    await deploy(api, "cronsite")

    made = {}
    for name, action in (
        ("ping", {"type": "http", "path": "/style.css", "method": "GET"}),
        ("post", {"type": "http", "path": "/", "method": "POST", "timeout_s": 5}),
        ("rebuild", {"type": "build"}),
    ):
        status, body = await api.call(
            "POST",
            "/projects/cronsite/schedules",
            {"name": name, "cron": "* * * * *", "action": action},
        )
        assert status == 201, body
        made[name] = body["id"]
    await make_due(api.platform.env["DATABASE_URL"], *made.values())

    ping = await eventually("the GET to be made", lambda: settled(api, made["ping"]), 30)
    assert ping["last_outcome"]["status"] == "succeeded"
    # (followed by "; 1 earlier tick(s) were due too" when a minute turned meanwhile)
    assert ping["last_outcome"]["detail"].startswith("GET /style.css answered 200")
    post = await eventually("the POST to be made", lambda: settled(api, made["post"]), 30)
    assert post["last_outcome"]["status"] == "failed"  # a static site takes no POST
    assert post["last_outcome"]["detail"].startswith("POST / answered 4")

    rebuild = await eventually("the build to end", lambda: settled(api, made["rebuild"]), 120)
    assert rebuild["last_outcome"]["status"] == "succeeded", rebuild
    build_id = rebuild["last_outcome"]["build_id"]
    _, build = await api.call("GET", f"/builds/{build_id}")
    assert build["trigger"] == "schedule"
    assert build["number"] == 2
    assert rebuild["next_run_at"] > rebuild["last_outcome"]["tick_at"]
