"""Process releases run: Node.js and Python apps start through the launcher, get their env vars
and PORT, serve through the edge, and their output reaches the LOGS stream with secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

from launchdeck.libs.jobs import Outcome
from launchdeck.libs.launcher.sandbox import detect_sandbox
from tests.deploy_engine.app_support import AppEngine, new_build, read_app_logs
from tests.deploy_engine.sample_apps import WORKER, app_release, env_json, node_app, python_app
from tests.polling import eventually

SECRET = "s3cr3t-token-value"


async def test_node_app_is_started_with_its_env_and_served_through_the_edge(
    app_engine: AppEngine,
) -> None:
    """`node server.js` starts on a loopback port given as PORT, with the project's production
    vars and the platform's metadata, in its release; the edge proxies to it; the deployment is
    active with its URL; what it prints reaches `ld.logs.app.<project>`, the secret masked."""
    app = app_engine
    app.env.set(app.project_id, "production", SECRET_TOKEN=SECRET, GREETING="hi")
    app.env.set(app.project_id, "preview", SECRET_TOKEN="not-this-one")
    build = new_build()
    async with read_app_logs(app.engine.js, app.project_id) as logs:
        outcome, events = await app.deploy(build, node_app("node v1"))
        assert outcome is Outcome.ACK
        assert [e.status for e in events] == ["activating", "active"], events[-1].error
        deployment = events[-1]
        assert deployment.url == f"http://{app.project}.localhost:{app.engine.edge.port}/"
        assert await app.get("/") == (200, "node v1")
        assert await app.get("/fetch") == (200, "fetched node v1")  # under the default rlimits

        status, body = await app.get("/env")
        env = env_json(body)
        web = app.web()
        assert status == 200
        port = web.record.port
        assert port is not None
        assert env["PORT"] == str(port)
        assert 20000 <= port <= 29999
        assert (env["SECRET_TOKEN"], env["GREETING"]) == (SECRET, "hi")
        assert env["LAUNCHDECK_PROJECT"] == app.project
        assert env["LAUNCHDECK_PROJECT_ID"] == app.project_id
        assert env["LAUNCHDECK_DEPLOYMENT_ID"] == deployment.deployment_id
        assert env["LAUNCHDECK_BUILD_ID"] == build
        assert env["LAUNCHDECK_ENVIRONMENT"] == "production"
        assert env["NODE_ENV"] == "production"  # the manifest's default
        # Nothing of the engine's own environment (NATS credentials, state dir) leaks in.
        assert not {k for k in env if k.startswith(("NATS_", "DATABASE_"))}
        assert "LAUNCHDECK_STATE_DIR" not in env

        text: str = await eventually(
            "the app's start line in its log",
            lambda: logs.text() if "listening on" in logs.text() else "",
        )
        assert f"listening on {port} (node v1, token=***)" in text
        assert SECRET not in text
        batch = logs.batches[0]
        assert (batch.project_id, batch.deployment_id, batch.process) == (
            app.project_id,
            deployment.deployment_id,
            "web",
        )
        seqs = [line.seq for b in logs.batches for line in b.lines]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)


async def test_python_app_runs_with_its_dependencies_from_the_release(
    app_engine: AppEngine,
) -> None:
    """A Python app imports a dependency shipped in its release (the manifest's PYTHONPATH) and
    serves through the edge."""
    outcome, events = await app_engine.deploy(new_build(), python_app("py v1"))
    assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
    assert await app_engine.get("/") == (200, "py v1 hello from a dependency")


async def test_the_app_runs_in_its_sandbox_under_its_limits(
    app_engine: AppEngine, tmp_path: Path
) -> None:
    """In the sandbox the app sees its release read-only, writes only its HOME and /tmp, sees
    nothing of the platform's state, and runs under the configured rlimits."""
    app = app_engine
    if not detect_sandbox("auto").enabled:
        raise AssertionError("bubblewrap is required for this test (make sync installs it)")
    planted = app.engine.edge.state_dir / "platform-secret.txt"
    planted.write_text("do not read")
    app.env.set(app.project_id, "production", PROBE_PATH=str(planted))
    outcome, events = await app.deploy(new_build(), python_app("py sandboxed"))
    assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
    status, body = await app.get("/sandbox")
    seen = json.loads(body)
    assert status == 200
    assert seen["probe"] == "absent"  # the engine's state directory is not there at all
    assert seen["release_writable"] is False
    assert (seen["home_writable"], seen["tmp_writable"]) == (True, True)
    assert seen["cwd"] == str(app.engine.edge.store.release_dir(app.project, events[-1].build_id))
    limits = app.fleet.settings.limits
    assert seen["limits"] == {
        "RLIMIT_AS": limits.address_space_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_NPROC": limits.processes,
    }
    home = app.apps_dir / app.web().record.id / "home" / "note.txt"
    assert home.read_text() == "x"  # its HOME is the instance's own directory
    assert not (
        app.engine.edge.store.release_dir(app.project, events[-1].build_id) / "planted.txt"
    ).exists()
    assert planted.read_text() == "do not read"  # untouched


async def test_a_worker_only_app_has_no_url_and_its_host_says_so(app_engine: AppEngine) -> None:
    """An app whose only process is a worker: it runs supervised, the deployment is active
    without a URL, and its host answers that there is no web process (not a 502)."""
    app = app_engine
    data = app_release({"worker.py": WORKER, "version.txt": "w1"}, {"worker": "python3 worker.py"})
    async with read_app_logs(app.engine.js, app.project_id) as logs:
        outcome, events = await app.deploy(new_build(), data)
        assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
        assert events[-1].url is None
        assert [i.record.process for i in app.live()] == ["worker"]
        await eventually(
            "worker heartbeats", lambda: "worker heartbeat" in logs.text(process="worker")
        )
    status, body = await app.get("/")
    assert status == 404
    assert "no web process" in body
