"""Zero-downtime activation of apps: redeploy under load, health checks that fail, release
commands, workers, rollback, previews and promotion, and a deleted project's processes."""

from __future__ import annotations

import time

import aiohttp

from launchdeck.libs.jobs import Outcome
from tests.deploy_engine.app_support import (
    AppEngine,
    Load,
    new_build,
    read_app_logs,
    where,
)
from tests.deploy_engine.sample_apps import (
    NODE_SERVER,
    WEBSOCKET_SERVER,
    WORKER,
    app_release,
    env_json,
    node_app,
)
from tests.deploy_engine.support import Engine
from tests.polling import eventually


async def test_redeploy_under_continuous_load_fails_no_request(app_engine: AppEngine) -> None:
    """Client loops request the app through the edge for the whole redeploy — four fast ones,
    two of a request taking 300 ms (some are always in flight when the route moves): no request
    fails, every answer comes from the old or the new release, and a second after activation
    only from the new one. The old process is drained (SIGTERM) and gone afterwards."""
    app = app_engine
    outcome, events = await app.deploy(new_build(), node_app("v1"))
    assert events[-1].status == "active", events[-1].error
    old = app.web()
    load = Load(app.engine.edge.port, f"{app.project}.localhost")
    async with (
        read_app_logs(app.engine.js, app.project_id) as logs,
        load.running(loops=4, slow_loops=2),
    ):
        await eventually("load before the redeploy", lambda: len(load.answers) > 50)
        outcome, events = await app.deploy(new_build(), node_app("v2"))
        activated = time.monotonic()
        assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
        await eventually(
            "answers for 1.5 s after activation",
            lambda: load.answers and load.answers[-1][0] > activated + 1.5,
        )
        await eventually(
            "the old process drained", lambda: old.process is not None and not old.process.running
        )
        await eventually(
            "SIGTERM in the old process's log",
            lambda: "SIGTERM: draining" in logs.text(deployment_id=old.record.deployment_id),
        )
    assert load.failures == [], load.failures[:5]
    assert all(status == 200 for _s, _e, status, _b in load.answers)
    assert where(load.answers, lambda _t: True) == {"v1", "v2"}
    assert where(load.answers, lambda t: t > activated + 1.0) == {"v2"}
    assert len(load.answers) > 200
    new = app.web()
    assert new.record.id != old.record.id
    # Every process left is the new instance's: the old one's are all gone.
    assert set(app.processes().values()) == {str(app.apps_dir / new.record.id)}


async def test_failing_health_check_keeps_the_old_release_and_quotes_the_app(
    app_engine: AppEngine,
) -> None:
    """A new release whose health path answers 500: the deployment fails with the reason and
    the app's last output lines; the old release still serves, its process untouched; the new
    process is gone."""
    app = app_engine
    await app.deploy(new_build(), node_app("v1"))
    old = app.web()
    assert old.process is not None
    old_pid = old.process.leader
    data = app_release(
        {"server.js": NODE_SERVER, "version.txt": "v2", "unhealthy.txt": "yes"},
        {"web": "node server.js"},
        health_path="/health",
    )
    outcome, events = await app.deploy(new_build(), data)
    assert outcome is Outcome.ACK
    assert [e.status for e in events] == ["activating", "failed"]
    error = events[-1].error or ""
    assert "health check failed after 3 tries: GET /health answered 500" in error
    assert "health: database unreachable" in error  # the app's own output, quoted
    assert await app.get("/") == (200, "v1")
    assert [i.record.id for i in app.live()] == [old.record.id]
    assert old.process.leader == old_pid
    assert old.process.running
    assert len(app.fleet.instances) == 1


async def test_an_app_that_exits_at_start_fails_with_its_output(app_engine: AppEngine) -> None:
    """A process that exits before it listens fails the deployment at once (no waiting out the
    health check), quoting what it printed; a first deploy leaves no site behind."""
    app = app_engine
    data = app_release(
        {"crash.js": "console.error(\"Error: Cannot find module 'express'\"); process.exit(1);"},
        {"web": "node crash.js"},
    )
    started = time.monotonic()
    _, events = await app.deploy(new_build(), data)
    assert [e.status for e in events] == ["activating", "failed"]
    error = events[-1].error or ""
    assert "exited with code 1 before it passed its health check" in error
    assert "Cannot find module 'express'" in error
    assert time.monotonic() - started < 10
    assert (await app.get("/"))[0] == 404
    assert app.engine.edge.store.active_build(app.project) is None


async def test_web_worker_and_release_command(app_engine: AppEngine) -> None:
    """A Procfile-like release: the release command runs once, in the new release, before
    anything starts; web and worker both run (the worker supervised, without a port); a failing
    release command fails the next deployment with its output, the old release still serving."""
    app = app_engine
    app.env.set(app.project_id, "production", QUEUE_URL="redis://queue")
    files = {
        "server.js": NODE_SERVER,
        "worker.py": WORKER,
        "version.txt": "v1",
        "migrate.sh": 'echo "migrating $LAUNCHDECK_DEPLOYMENT_ID in $(pwd)"\n',
    }
    processes = {"web": "node server.js", "worker": "python3 worker.py"}
    async with read_app_logs(app.engine.js, app.project_id) as logs:
        outcome, events = await app.deploy(
            new_build(), app_release(files, processes, release_command="sh migrate.sh")
        )
        assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
        deployment = events[-1].deployment_id
        release = app.engine.edge.store.release_dir(app.project, events[-1].build_id)
        assert sorted(i.record.process for i in app.live()) == ["web", "worker"]
        worker = next(i for i in app.live() if i.record.process == "worker")
        assert worker.record.port is None
        assert await app.get("/") == (200, "v1")
        await eventually(
            "the worker's heartbeat", lambda: "worker heartbeat" in logs.text(process="worker")
        )
        assert "worker up (v1, queue=***)" in logs.text(
            process="worker"
        )  # every env var value is masked
        release_log = logs.lines(process="release", deployment_id=deployment)
        assert f"migrating {deployment} in {release}" in release_log
        assert release_log[-1] == "✔ The release command succeeded"

    files2 = {**files, "version.txt": "v2", "migrate.sh": 'echo "relation users exists"; exit 4\n'}
    outcome, events = await app.deploy(
        new_build(), app_release(files2, processes, release_command="sh migrate.sh")
    )
    assert [e.status for e in events] == ["activating", "failed"]
    error = events[-1].error or ""
    assert "the release command `sh migrate.sh` exited with code 4" in error
    assert "relation users exists" in error
    assert await app.get("/") == (200, "v1")
    assert sorted(i.record.deployment_id for i in app.live()) == [deployment, deployment]
    assert worker.running


async def test_rollback_starts_the_old_release_again_without_its_artifact(
    app_engine: AppEngine,
) -> None:
    """Rolling back a process app starts the old release's process again from disk."""
    app = app_engine
    first, second = new_build(), new_build()
    await app.deploy(first, node_app("v1"))
    await app.deploy(second, node_app("v2"))
    assert await app.get("/") == (200, "v2")
    objects = await app.engine.js.object_store("artifacts")
    await objects.delete(f"{first}.tar.gz")
    outcome, events = await app.deploy(first)
    assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
    assert await app.get("/") == (200, "v1")
    assert app.web().record.build_id == first
    assert app.engine.edge.store.active_build(app.project) == first
    await eventually("one web process left", lambda: len(app.fleet.instances) == 1)


async def test_previews_run_their_own_processes_and_promotion_restarts_with_production_vars(
    app_engine: AppEngine,
) -> None:
    """A preview runs its own process with the preview vars, at its host and its path, beside
    production. At most 2 (here) preview processes per project: a third stops the oldest,
    whose URL then says so (503 with a page, not a 502). Promoting a preview starts its release
    in production with the production vars."""
    app = app_engine
    app.env.set(app.project_id, "production", SECRET_TOKEN="prod")
    app.env.set(app.project_id, "preview", SECRET_TOKEN="preview")
    await app.deploy(new_build(), node_app("prod v1"))
    previews = [new_build() for _ in range(3)]
    for n, build in enumerate(previews[:2]):
        outcome, events = await app.deploy(build, node_app(f"preview {n}"), environment="preview")
        assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
        host = f"{build[:8]}-{app.project}.localhost"
        assert events[-1].url == f"http://{host}:{app.engine.edge.port}/"
        assert await app.get("/", host=host) == (200, f"preview {n}")
        assert await app.get(f"/preview/{build}/") == (200, f"preview {n}")
        assert env_json((await app.get("/env", host=host))[1])["SECRET_TOKEN"] == "preview"
    assert await app.get("/") == (200, "prod v1")

    await app.deploy(previews[2], node_app("preview 2"), environment="preview")
    oldest = f"{previews[0][:8]}-{app.project}.localhost"
    status, body = await app.get("/", host=oldest)
    assert status == 503
    assert "This preview was stopped" in body
    assert "Redeploy it" in body
    assert (await app.get(f"/preview/{previews[0]}/"))[0] == 503
    await eventually(
        "the oldest preview's process stopped", lambda: not app.live(f"preview:{previews[0]}")
    )
    assert await app.get("/", host=f"{previews[1][:8]}-{app.project}.localhost") == (
        200,
        "preview 1",
    )

    # Redeploying the stopped preview starts it again (and stops the next oldest).
    outcome, events = await app.deploy(previews[0], environment="preview")
    assert events[-1].status == "active", events[-1].error
    assert await app.get("/", host=oldest) == (200, "preview 0")
    assert (await app.get("/", host=f"{previews[1][:8]}-{app.project}.localhost"))[0] == 503

    outcome, events = await app.deploy(previews[2])  # promotion: production, same build
    assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
    assert await app.get("/") == (200, "preview 2")
    assert env_json((await app.get("/env"))[1])["SECRET_TOKEN"] == "prod"
    preview_host = f"{previews[2][:8]}-{app.project}.localhost"
    assert await app.get("/", host=preview_host) == (200, "preview 2")  # still its own process
    assert app.web().record.id != app.web(f"preview:{previews[2]}").record.id


async def test_a_deleted_projects_processes_stop(app_engine: AppEngine) -> None:
    """UndeployRequested stops every process of the project (production and previews), and its
    routes and releases go."""
    app = app_engine
    await app.deploy(new_build(), node_app("v1"))
    await app.deploy(new_build(), node_app("p1"), environment="preview")
    assert len(app.processes()) >= 2
    assert await app.engine.undeploy() is Outcome.ACK
    assert app.processes() == {}
    assert app.fleet.instances == {}
    assert (await app.get("/"))[0] == 404
    assert not list(app.apps_dir.glob("[0-9a-f]*"))


async def test_websocket_upgrades_pass_through_the_edge(app_engine: AppEngine) -> None:
    """A WebSocket app behind the edge: the upgrade and the frames pass both ways, and the
    connection survives another project's deploy (Caddy reloading its config)."""
    app = app_engine
    data = app_release({"ws.py": WEBSOCKET_SERVER, "version.txt": "ws1"}, {"web": "python3 ws.py"})
    _, events = await app.deploy(new_build(), data)
    assert events[-1].status == "active", events[-1].error
    url = f"http://127.0.0.1:{app.engine.edge.port}/socket"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Host": f"{app.project}.localhost"}) as ws,
    ):
        await ws.send_str("hello")
        assert (await ws.receive_str(timeout=5)) == "ws1 echo: hello"
        other = Engine(
            app.engine.handler,
            app.engine.js,
            app.engine.edge,
            new_build(),
            f"other-{new_build()[:8]}",
        )
        assert (await other.deploy(new_build(), {"index.html": "other"}))[0] is Outcome.ACK
        await ws.send_str("still there")
        assert (await ws.receive_str(timeout=5)) == "ws1 echo: still there"
