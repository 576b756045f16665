"""Canary scan: a secret given to the platform goes where it is needed (the build, the running app)
and nowhere else. The platform runs as processes; an env var holding a unique canary value goes
through builds (which print it), a deployment and a redeploy of an app that runs with it; a token
and a rotated webhook secret are made too. Then Postgres (plaintext), every JetStream message and
object, every log file and every API answer the test got are searched for each secret (and its
base64 and hex forms): no hit, except where the API hands a secret over once; the build log has
the line that printed the canary, with the value masked."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from launchdeck.devservers import free_port
from launchdeck.libs.jetstream import connect
from tests.deploy_engine.sample_apps import NODE_SERVER
from tests.e2e.secrets_scan import (
    Hit,
    RecordingApi,
    encodings,
    scan_answers,
    scan_jetstream,
    scan_logs,
    scan_postgres,
)
from tests.e2e.support import Api, Platform, launch_platform
from tests.libs.support import RestartableNats
from tests.polling import eventually
from tests.support import GitRepoFactory, commit_files

PROJECT = "canary"
# A build that prints its secret, as a careless build script does (the command runs without a
# shell: the script reads the variable itself).
BUILD_COMMAND = "node print-secret.js"
PRINT_SECRET = 'console.log("leaked-secret=" + process.env.SECRET_TOKEN);\n'


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableNats]:
    """This module's own NATS: the scan reads every message it holds, and the session's server
    holds every other module's too."""
    store = tmp_path_factory.mktemp("scan-nats")
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
        tmp_path_factory.mktemp("secrets-scan"),
        database_url,
        own_nats.url,
        {"LAUNCHDECK_HEALTH_CHECK_INTERVAL_S": "0.2"},
        nats_logs=[own_nats.log_file],
    ) as p:
        yield p


def node_app(version: str) -> dict[str, str | bytes]:
    package = {"name": "canary-app", "version": "1.0.0", "scripts": {"start": "node server.js"}}
    return {
        "package.json": json.dumps(package),
        "server.js": NODE_SERVER,
        "version.txt": version,
        "print-secret.js": PRINT_SECRET,
    }


async def wait_finished(api: RecordingApi, build_id: str) -> dict[str, object]:
    build = await api.wait_build(build_id)
    assert build["status"] == "succeeded", build
    return build


async def exercise(api: RecordingApi, repo: Path, canary: str) -> dict[str, str]:
    """Everything that handles the secrets; returns the secrets the API handed over, by name."""
    status, project = await api.call(
        "POST",
        "/projects",
        {"name": PROJECT, "repo_url": str(repo), "build": {"build_command": BUILD_COMMAND}},
    )
    assert status == 201, project
    status, var = await api.call(
        "PUT",
        f"/projects/{PROJECT}/env/SECRET_TOKEN",
        {"value": canary, "targets": ["build", "production"]},
    )
    assert status == 200, var
    status, token = await api.call(
        "POST", "/tokens", {"name": "scan-reader", "scopes": ["read"], "project_id": PROJECT}
    )
    assert status == 201, token
    status, rotated = await api.call("POST", f"/projects/{PROJECT}/webhook-secret")
    assert status == 200, rotated

    # A build and its deployment; the app starts with the canary and prints it (masked).
    status, build = await api.call("POST", f"/projects/{PROJECT}/builds", {})
    assert status == 202, build
    build = await wait_finished(api, str(build["id"]))
    deployment = await api.wait_build_deployment(str(build["id"]), timeout_s=60)
    assert (await api.edge_get(PROJECT))[0] == 200

    async def app_started() -> str | None:
        _, text = await api.call("GET", f"/projects/{PROJECT}/logs?limit=1000")
        return str(text) if "listening on" in str(text) else None

    app_log = await eventually("the app's start line", app_started)
    assert "token=***" in app_log

    # A redeploy (the app restarts with the value again) and a second build.
    status, redeployed = await api.call("POST", f"/projects/{PROJECT}/redeploy")
    assert status == 202, redeployed
    await api.wait_deployment(str(redeployed["id"]))
    commit_files(repo, {"version.txt": "v2"}, "v2")
    status, second = await api.call("POST", f"/projects/{PROJECT}/builds", {})
    assert status == 202, second
    await wait_finished(api, str(second["id"]))
    await api.wait_build_deployment(str(second["id"]), timeout_s=60)

    # What people read back: the logs (masked), the project, its vars, its history.
    for build_id in (build["id"], second["id"]):
        status, log = await api.call("GET", f"/builds/{build_id}/logs")
        assert status == 200, log
        assert "leaked-secret=***" in log.splitlines(), log
    reader = {"Authorization": f"Bearer {token['token']}"}
    for path in (
        f"/projects/{PROJECT}",
        f"/projects/{PROJECT}/env",
        f"/projects/{PROJECT}/builds",
        f"/projects/{PROJECT}/deployments",
        f"/deployments/{deployment['id']}",
        "/tokens",
        "/audit",
    ):
        status, _ = await api.call("GET", path)
        assert status == 200, path
    status, _ = await api.call("GET", f"/projects/{PROJECT}", headers=reader)
    assert status == 200
    return {"token": str(token["token"]), "webhook secret": str(rotated["webhook_secret"])}


@pytest_asyncio.fixture(loop_scope="session")
async def js(own_nats: RestartableNats) -> AsyncIterator[JetStreamContext]:
    """JetStream of the module's NATS, as the operator (who may read everything)."""
    nc = await connect(own_nats.url, name="launchdeck-tests-scan")
    try:
        yield nc.jetstream()
    finally:
        await nc.drain()


async def test_a_secret_is_found_nowhere_but_masked_in_the_build_log(
    api: Api, platform: Platform, js: JetStreamContext, make_git_repo: GitRepoFactory
) -> None:
    """Zero hits for the env var canary in Postgres, JetStream (messages and objects), the log
    files and the API answers; the token and the rotated webhook secret only in the one answer
    that handed each over; the build log has `leaked-secret=***`."""
    canary = f"LDCANARY_{uuid.uuid4().hex}"
    recorder = RecordingApi(api)
    handed_over = await exercise(recorder, make_git_repo(node_app("v1")), canary)

    secrets = {"env var canary": canary, **handed_over}
    hits: list[Hit] = []
    stream_hits, messages_read = await scan_jetstream(js, encodings(canary))
    assert messages_read > 0
    log_hits, log_files = scan_logs(platform.state_dir, encodings(canary))
    assert {"control_api.log", "build_worker.log", "deploy_engine.log"} <= {
        p.name for p in log_files
    }
    hits += stream_hits + log_hits
    for name, value in secrets.items():
        forms = encodings(value)
        hits += scan_postgres(platform.env["DATABASE_URL"], forms)
        if name != "env var canary":
            hits += (await scan_jetstream(js, forms))[0] + scan_logs(platform.state_dir, forms)[0]
        # The answer that hands a secret over is the one place it may be (once).
        answers = [
            (what, body)
            for what, body in recorder.answers
            if not (name == "token" and what.startswith("POST /tokens "))
            and not (name == "webhook secret" and what.endswith("/webhook-secret → 200"))
        ]
        assert len(answers) < len(recorder.answers) or name == "env var canary"
        hits += scan_answers(answers, forms)
    assert not hits, "secrets found:\n" + "\n".join(str(hit) for hit in hits)
