"""One-off runs: a command of the project's live production release runs once, in the app
sandbox with the production env vars; its output reaches `ld.logs.run.<run>` masked, and its
exit code is the run's outcome."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    RunCancelRequested,
    RunLogBatch,
    RunRequested,
    RunStatusChanged,
)
from launchdeck.deploy_engine.apps.env import nats_env_source
from launchdeck.deploy_engine.main import nats_cancel_check, nats_publish
from launchdeck.deploy_engine.runs.handler import RunHandler, fleet_releases
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, marked_pids
from launchdeck.libs.launcher.sandbox import detect_sandbox
from tests.deploy_engine.app_support import FAST, AppEngine, new_build
from tests.deploy_engine.sample_apps import python_app
from tests.polling import eventually

SECRET = "run-s3cr3t-value"


@dataclass
class Runs:
    handler: RunHandler
    app: AppEngine
    js: JetStreamContext
    runs_dir: Path

    def command(self, command: str, *, timeout_s: int = 60) -> RunRequested:
        return RunRequested(
            run_id=str(uuid.uuid4()),
            project_id=self.app.project_id,
            project_name=self.app.project,
            command=command,
            timeout_s=timeout_s,
        )

    async def handle(self, cmd: RunRequested, num_delivered: int = 1) -> Outcome:
        delivery = Delivery(
            num_delivered=num_delivered, max_deliver=3, subject=s.SUBJECT_RUN_JOBS, stream_seq=1
        )
        return await self.handler.handle_run(cmd, delivery)

    async def run(self, command: str, *, timeout_s: int = 60) -> tuple[Outcome, RunRequested]:
        cmd = self.command(command, timeout_s=timeout_s)
        return await self.handle(cmd), cmd

    async def cancel(self, cmd: RunRequested) -> None:
        """What `POST /api/v1/runs/{id}/cancel` writes first: the run's mark."""
        mark = RunCancelRequested(run_id=cmd.run_id, project_id=cmd.project_id)
        await (await self.js.key_value(s.KV_CANCELLATIONS)).put(cmd.run_id, encode(mark))

    async def events(self, cmd: RunRequested) -> list[RunStatusChanged]:
        subject = s.run_event_subject(cmd.project_id, cmd.run_id)
        return [decode(data, RunStatusChanged) for data in await _stored(self.js, subject)]

    async def log(self, run_id: str) -> list[RunLogBatch]:
        return [
            decode(data, RunLogBatch) for data in await _stored(self.js, s.run_log_subject(run_id))
        ]


async def _stored(js: JetStreamContext, subject: str) -> list[bytes]:
    """Every message stored on `subject` so far (the handler has returned: all of them)."""
    sub = await js.subscribe(subject, ordered_consumer=True)
    found: list[bytes] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            found.append(msg.data)
    finally:
        await sub.unsubscribe()


@pytest_asyncio.fixture(loop_scope="session")
async def runs(
    app_engine: AppEngine, js: JetStreamContext, nc: Client, tmp_path: Path
) -> AsyncIterator[Runs]:
    runs_dir = tmp_path / "runs"
    handler = RunHandler(
        releases=fleet_releases(app_engine.fleet),
        env_source=nats_env_source(nc, wait_s=FAST.env_wait_s),
        publish=nats_publish(js, 10.0),
        runs_dir=runs_dir,
        sandbox=detect_sandbox("auto", variable="LAUNCHDECK_APP_SANDBOX"),
        limits=FAST.limits,
        private=(app_engine.engine.edge.state_dir, tmp_path / "apps"),
        cancelled=nats_cancel_check(js),
        cancel_poll_s=0.1,
    )
    yield Runs(handler, app_engine, js, runs_dir)


async def deploy_python(runs: Runs) -> str:
    app = runs.app
    app.env.set(app.project_id, "production", SECRET_TOKEN=SECRET, GREETING="hello")
    build = new_build()
    outcome, events = await app.deploy(build, python_app("py v1"))
    assert (outcome, events[-1].status) == (Outcome.ACK, "active"), events[-1].error
    return build


PRINTS_AND_EXITS_3 = (
    'python3 -c "import sys\n'
    "for i in range(1, 4): print(f'out {i}', flush=True)\n"
    "for i in range(1, 3): print(f'err {i}', file=sys.stderr, flush=True)\n"
    'sys.exit(3)"'
)


async def test_a_failing_command_fails_the_run_with_its_exit_code_and_its_output(
    runs: Runs,
) -> None:
    """A command printing to stdout and stderr that exits 3 runs in the live release: `running`
    then `failed` with exit code 3 and `exited with code 3`; every line is in the run's log, in
    order per stream, followed by the eof carrying `failed`."""
    build = await deploy_python(runs)
    outcome, cmd = await runs.run(PRINTS_AND_EXITS_3)
    assert outcome is Outcome.ACK
    events = await runs.events(cmd)
    assert [e.status for e in events] == ["running", "failed"]
    assert events[-1].exit_code == 3
    assert events[-1].error == "exited with code 3"
    assert events[0].build_id == build
    assert events[0].deployment_id == runs.app.web().record.deployment_id
    batches = await runs.log(cmd.run_id)
    lines = [line for b in batches for line in b.lines]
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert [line.line for line in lines if line.stream == "stdout"] == ["out 1", "out 2", "out 3"]
    assert [line.line for line in lines if line.stream == "stderr"] == ["err 1", "err 2"]
    assert (batches[-1].eof, batches[-1].status) == (True, "failed")
    assert not (runs.runs_dir / cmd.run_id).exists()  # its directory goes once reported


async def test_a_command_that_exits_0_succeeds_with_the_production_env_masked(
    runs: Runs,
) -> None:
    """Exit 0 → `succeeded`. The command sees the production vars and the run's own (no PORT,
    nothing of the engine's), runs in the release directory, and a secret value it prints is
    `***` in the log."""
    await deploy_python(runs)
    command = (
        'python3 -c "import json, os; print(json.dumps(dict(os.environ)))" && '
        "cat version.txt && echo && echo token=$SECRET_TOKEN greeting=${#GREETING}"
    )
    outcome, cmd = await runs.run(command)
    assert outcome is Outcome.ACK
    events = await runs.events(cmd)
    assert [e.status for e in events] == ["running", "succeeded"], events[-1].error
    assert events[-1].exit_code == 0
    lines = [line.line for b in await runs.log(cmd.run_id) for line in b.lines]
    text = "\n".join(lines)
    assert SECRET not in text
    assert "token=*** greeting=5" in lines  # every env var value is masked
    assert "py v1" in lines
    env = json.loads(next(line for line in lines if line.startswith("{")))
    assert env["SECRET_TOKEN"] == "***"  # masked in the log (the process had the value)
    assert env["LAUNCHDECK_RUN_ID"] == cmd.run_id
    assert env["LAUNCHDECK_PROCESS"] == "run"
    assert env["LAUNCHDECK_ENVIRONMENT"] == "production"
    assert "PORT" not in env
    assert not {k for k in env if k.startswith(("NATS_", "DATABASE_"))}


async def test_a_command_past_its_timeout_is_killed_and_fails(runs: Runs) -> None:
    """A command still running at its timeout is killed with everything it started (also a
    background child) and the run fails with `timed out after N s`."""
    await deploy_python(runs)
    outcome, cmd = await runs.run("echo started; sleep 300 & sleep 300", timeout_s=1)
    assert outcome is Outcome.ACK
    events = await runs.events(cmd)
    assert [e.status for e in events] == ["running", "failed"]
    assert events[-1].error == "timed out after 1 s"
    assert events[-1].exit_code is None
    lines = [line.line for b in await runs.log(cmd.run_id) for line in b.lines]
    assert "started" in lines
    root = str(runs.runs_dir)
    assert marked_pids(lambda m: m.startswith(root), APP_MARKER_VAR) == {}


async def test_a_project_without_a_live_release_fails_readably(runs: Runs) -> None:
    """No live release (nothing deployed, or a static site): the run fails at once with a
    readable reason and never reports `running`."""
    outcome, cmd = await runs.run("echo never")
    assert outcome is Outcome.ACK
    events = await runs.events(cmd)
    assert [e.status for e in events] == ["failed"]
    assert events[-1].error == f"no live release of {runs.app.project} to run in"
    batches = await runs.log(cmd.run_id)
    assert (batches[-1].eof, batches[-1].status) == (True, "failed")


async def test_a_run_interrupted_by_the_engine_is_never_started_twice(runs: Runs) -> None:
    """A redelivered run whose directory exists (an engine died while it ran) is reported
    failed as interrupted, and its command does not run again."""
    await deploy_python(runs)
    run_id = str(uuid.uuid4())
    (runs.runs_dir / run_id / "home").mkdir(parents=True)
    cmd = RunRequested(
        run_id=run_id,
        project_id=runs.app.project_id,
        project_name=runs.app.project,
        command="echo ran-again",
        timeout_s=10,
    )
    delivery = Delivery(num_delivered=2, max_deliver=3, subject=s.SUBJECT_RUN_JOBS, stream_seq=1)
    assert await runs.handler.handle_run(cmd, delivery) is Outcome.ACK
    events = await runs.events(cmd)
    assert [(e.status, e.error, e.attempt) for e in events] == [
        ("failed", "interrupted: the deploy-engine stopped while it ran", 2)
    ]
    lines = [line.line for b in await runs.log(run_id) for line in b.lines]
    assert "ran-again" not in lines


async def test_a_run_cancelled_before_it_started_never_runs(runs: Runs) -> None:
    """A run whose cancel mark is there when the engine picks it up ends `cancelled` without
    starting (no `running`), its log saying so."""
    await deploy_python(runs)
    cmd = runs.command("echo should-not-run")
    await runs.cancel(cmd)
    assert await runs.handle(cmd) is Outcome.ACK
    events = await runs.events(cmd)
    assert [(e.status, e.error) for e in events] == [
        ("cancelled", "Cancelled on request before it started")
    ]
    batches = await runs.log(cmd.run_id)
    lines = [line.line for b in batches for line in b.lines]
    assert lines == ["■ Cancelled before it started"]
    assert (batches[-1].eof, batches[-1].status) == (True, "cancelled")


async def test_a_running_run_is_stopped_when_cancelled(runs: Runs) -> None:
    """A cancel mark written while the command runs stops it within the poll interval: its
    processes are killed and the run ends `cancelled`."""
    await deploy_python(runs)
    cmd = runs.command("echo started; sleep 300", timeout_s=120)
    task = asyncio.create_task(runs.handle(cmd))
    root = str(runs.runs_dir)
    await eventually(
        "the command running", lambda: marked_pids(lambda m: m.startswith(root), APP_MARKER_VAR)
    )
    await runs.cancel(cmd)
    assert await asyncio.wait_for(task, 30) is Outcome.ACK
    events = await runs.events(cmd)
    assert [(e.status, e.error) for e in events] == [
        ("running", None),
        ("cancelled", "Cancelled on request"),
    ]
    lines = [line.line for b in await runs.log(cmd.run_id) for line in b.lines]
    assert "started" in lines
    assert lines[-1] == "■ Cancelled on request: the command was stopped"
    assert marked_pids(lambda m: m.startswith(root), APP_MARKER_VAR) == {}
