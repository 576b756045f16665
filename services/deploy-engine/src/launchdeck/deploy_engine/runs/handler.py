"""Handling one RunRequested: run a command once in the project's live production release.

The run happens where the project's app runs and as its processes do: in the release directory
the edge serves for production, in the app sandbox (`Sandbox.for_app`: the release read-only,
its own HOME and /tmp, nothing of the platform's state), under the apps' resource limits, with
the production env vars (asked of the control-api for the live deployment, as the app's own
processes get them) and the platform's variables (`LAUNCHDECK_RUN_ID`,
`LAUNCHDECK_PROCESS=run`, …) — no `PORT`, and nothing of the engine's own environment.

running → the command (`sh -c`, as a Procfile line) → succeeded (exit 0) / failed (`exited with
code N`, `timed out after N s`: its whole process group and whatever carries its marker are
killed). A project with no live process release fails at once: `no live release of <p> to run
in`. A run whose cancel was asked for (its mark in the `cancellations` bucket, `CancelCheck`) is
not started, or, running, is stopped within `cancel_poll_s`: `cancelled`.

Output goes to `ld.logs.run.<run>` (`runs.output`); the eof batch goes before the final event,
so whoever reads the log once the run is seen finished finds it complete.

A run is never started twice: its directory (`<state>/runs/<run>/`) exists from the moment the
command may start until its outcome is stored. A redelivered command that finds it (the engine
died, or was stopped, while the command ran) kills what is left of it and reports the outcome
recorded there (`result.json`, when the command had ended) or `failed`: `interrupted: the
deploy-engine stopped while it ran`.

The handler knows nothing of NATS: events and log batches go through `Publish`, env vars through
`EnvSource`, the live release through `LiveReleases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from msgspec.structs import replace

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import ReleaseManifest, RunRequested, RunStatusChanged
from launchdeck.contracts.statuses import RunStatus
from launchdeck.contracts.subjects import run_event_subject
from launchdeck.deploy_engine.apps.env import EnvSource, app_environment
from launchdeck.deploy_engine.apps.fleet import Fleet
from launchdeck.deploy_engine.apps.process import AppProcess, SpawnFailed
from launchdeck.deploy_engine.apps.records import PRODUCTION, InstanceRecord
from launchdeck.deploy_engine.runs.output import Publish, RunOutput
from launchdeck.libs.env_client import EnvRefused, EnvUnavailable
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.limits import ResourceLimits
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, kill_marked
from launchdeck.libs.launcher.sandbox import BuildSandbox, Sandbox
from launchdeck.libs.logging import bind_ids, get_logger

log = get_logger(__name__)

RUN_PROCESS = "run"  # LAUNCHDECK_PROCESS of a run
RESULT_FILE = "result.json"
INTERRUPTED = "interrupted: the deploy-engine stopped while it ran"
CANCELLED = "Cancelled on request"
CANCELLED_QUEUED = "Cancelled on request before it started"  # as the control-api says it
CANCEL_POLL_S = 1.0

# run id → whether its cancel was asked for (its mark in the `cancellations` bucket).
CancelCheck = Callable[[str], Awaitable[bool]]


async def never_cancelled(_run_id: str) -> bool:
    return False


@dataclass(frozen=True)
class LiveRelease:
    """The release the edge serves for a project's production, and the deployment it is."""

    record: InstanceRecord  # one of its live processes (what they share: ids, release dir)
    manifest: ReleaseManifest

    @property
    def release(self) -> Path:
        return Path(self.record.release)


# project name → its live production process release, or None.
LiveReleases = Callable[[str], LiveRelease | None]


def fleet_releases(fleet: Fleet) -> LiveReleases:
    """The live production release of a project as this engine's fleet runs it."""

    def find(project: str) -> LiveRelease | None:
        for instance in fleet.in_slot(project, PRODUCTION):
            return LiveRelease(record=instance.record, manifest=instance.manifest)
        return None

    return find


class Result(msgspec.Struct, kw_only=True, frozen=True):
    """How a run ended, as its final event says it."""

    status: RunStatus
    exit_code: int | None = None
    error: str | None = None
    deployment_id: str | None = None
    build_id: str | None = None


class RunHandler:
    def __init__(
        self,
        *,
        releases: LiveReleases,
        env_source: EnvSource,
        publish: Publish,
        runs_dir: Path,
        sandbox: Sandbox,
        limits: ResourceLimits | None,
        private: Iterable[Path] = (),
        cancelled: CancelCheck = never_cancelled,
        cancel_poll_s: float = CANCEL_POLL_S,
    ) -> None:
        self.releases = releases
        self.env_source = env_source
        self.publish = publish
        self.runs_dir = runs_dir
        self.sandbox = sandbox
        self.limits = limits
        self.private = tuple(private)
        self.cancelled = cancelled
        self.cancel_poll_s = cancel_poll_s
        self.running = 0
        self.succeeded = 0
        self.failed = 0

    def status(self) -> dict[str, object]:
        return {
            "runs_running": self.running,
            "runs_succeeded": self.succeeded,
            "runs_failed": self.failed,
        }

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    async def reclaim(self) -> list[int]:
        """At start: kill every run process a previous engine left (its runs are redelivered
        and reported interrupted)."""
        root = str(self.runs_dir) + "/"
        return await asyncio.to_thread(kill_marked, lambda m: m.startswith(root), APP_MARKER_VAR)

    async def handle_run(self, cmd: RunRequested, delivery: Delivery) -> Outcome:
        bind_ids(run_id=cmd.run_id, project_id=cmd.project_id)
        run_dir = self.run_dir(cmd.run_id)
        if not _safe_id(cmd.run_id):
            log.error("run_id_invalid", run_id=cmd.run_id)
            return Outcome.TERM
        output = RunOutput(
            self.publish, cmd.run_id, run_dir=run_dir, attempt=delivery.num_delivered
        )
        try:
            if run_dir.exists():
                result = await self._left_behind(cmd, run_dir)
            else:
                result = await self._run(cmd, delivery, run_dir, output)
            return await self._finish(cmd, delivery, result, output)
        finally:
            await output.abandon()  # stopped already, unless the attempt ended early

    async def _left_behind(self, cmd: RunRequested, run_dir: Path) -> Result:
        """An earlier attempt started the command: never run it again."""
        marker = str(run_dir)
        await asyncio.to_thread(kill_marked, marker.__eq__, APP_MARKER_VAR)
        try:
            result: Result = decode((run_dir / RESULT_FILE).read_bytes(), Result)
            return result
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            log.warning("run_interrupted", run_id=cmd.run_id)
            return Result(status="failed", error=INTERRUPTED)

    async def _run(
        self, cmd: RunRequested, delivery: Delivery, run_dir: Path, output: RunOutput
    ) -> Result:
        live = self.releases(cmd.project_name)
        if await self._cancel_requested(cmd.run_id):
            output.system("■ Cancelled before it started")
            return Result(status="cancelled", error=CANCELLED_QUEUED)
        if live is None or not live.release.is_dir():
            output.system(f"✖ No live release of {cmd.project_name} to run `{cmd.command}` in")
            return Result(status="failed", error=f"no live release of {cmd.project_name} to run in")
        record = live.record
        ids = Result(status="running", deployment_id=record.deployment_id, build_id=record.build_id)
        try:
            project_vars = await self.env_source(cmd.project_id, record.deployment_id, "production")
        except EnvRefused as exc:
            return replace(ids, status="failed", error=f"its env vars could not be had: {exc}")
        except EnvUnavailable:
            raise  # infrastructure: redelivered (nothing has started)
        output.set_secrets(project_vars.values())
        await self._report(cmd, delivery, ids)
        for sub in ("home", "tmp"):  # from here on, the command may have started
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        run_record = msgspec.structs.replace(record, process=RUN_PROCESS, port=None)
        env = app_environment(
            run_record,
            live.manifest,
            project_vars,
            instance_dir=run_dir,
            sandboxed=self.sandbox.enabled,
        )
        env["LAUNCHDECK_RUN_ID"] = cmd.run_id
        sandbox = self.sandbox.for_app(rundir=run_dir, release=live.release, private=self.private)
        output.system(f"▶ Running `{cmd.command}` in release {record.build_id}")
        self.running += 1
        try:
            return await self._execute(cmd, delivery, run_dir, live, env, sandbox, output, ids)
        finally:
            self.running -= 1

    async def _execute(
        self,
        cmd: RunRequested,
        delivery: Delivery,
        run_dir: Path,
        live: LiveRelease,
        env: dict[str, str],
        sandbox: BuildSandbox | None,
        output: RunOutput,
        ids: Result,
    ) -> Result:
        started = time.monotonic()
        try:
            process = await AppProcess.spawn(
                directory=run_dir,
                marker=str(run_dir),
                command=cmd.command,
                release=live.release,
                env=env,
                sandbox=sandbox,
                limits=self.limits,
                sink=output.write,
            )
        except SpawnFailed as exc:
            output.system(f"✖ {exc}")
            return replace(ids, status="failed", error=str(exc))
        try:
            with delivery.working():
                ended = await self._wait(cmd, process, started)
            if ended == "timeout":
                await process.kill()
                error = f"timed out after {cmd.timeout_s} s"
                output.system(f"✖ The command {error} and was stopped")
                return replace(ids, status="failed", error=error)
            if ended == "cancelled":
                await process.kill()
                output.system("■ Cancelled on request: the command was stopped")
                return replace(ids, status="cancelled", error=CANCELLED)
        except asyncio.CancelledError:
            # The engine is stopping: the command goes with it; the redelivery reports it.
            with contextlib.suppress(Exception):
                await asyncio.shield(process.kill())
            raise
        code = await process.exit_code()
        # Whatever it left running (a daemonised child) goes too; its output is read to the end.
        await process.kill()
        took = time.monotonic() - started
        if code == 0:
            output.system(f"✔ The command succeeded in {took:.1f}s")
            return replace(ids, status="succeeded", exit_code=0)
        how = await process.exit_description()
        output.system(f"✖ The command {how}")
        exit_code = code if code is not None and code >= 0 else None
        return replace(ids, status="failed", exit_code=exit_code, error=how)

    async def _wait(self, cmd: RunRequested, process: AppProcess, started: float) -> str:
        """Until the command exits (`exited`), its time is up (`timeout`) or its cancel is
        asked for (`cancelled`: looked for every `cancel_poll_s`)."""
        deadline = started + cmd.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                await asyncio.wait_for(process.exited.wait(), min(left, self.cancel_poll_s))
            except TimeoutError:
                if time.monotonic() < deadline and await self._cancel_requested(cmd.run_id):
                    return "cancelled"
            else:
                return "exited"

    async def _cancel_requested(self, run_id: str) -> bool:
        try:
            return await self.cancelled(run_id)
        except Exception as exc:  # NATS away: the run goes on; the next look may tell
            log.warning("run_cancel_mark_unreadable", run_id=run_id, error=repr(exc))
            return False

    async def _finish(
        self, cmd: RunRequested, delivery: Delivery, result: Result, output: RunOutput
    ) -> Outcome:
        run_dir = self.run_dir(cmd.run_id)
        if run_dir.exists():  # kept until the outcome is stored: a redelivery reports it
            with contextlib.suppress(OSError):
                (run_dir / RESULT_FILE).write_bytes(encode(result))
        try:
            await output.close(result.status)
        except Exception as exc:
            log.warning("run_log_incomplete", error=str(exc))
        try:
            await self._report(cmd, delivery, result)
        except Exception as exc:
            log.error("run_outcome_not_reported", status=result.status, error=str(exc))
            return Outcome.RETRY
        if result.status == "succeeded":
            self.succeeded += 1
        else:
            self.failed += 1
        log.info(
            "run_finished", status=result.status, exit_code=result.exit_code, error=result.error
        )
        await asyncio.to_thread(shutil.rmtree, run_dir, True)
        return Outcome.ACK

    async def _report(self, cmd: RunRequested, delivery: Delivery, result: Result) -> None:
        event = RunStatusChanged(
            run_id=cmd.run_id,
            project_id=cmd.project_id,
            status=result.status,
            attempt=delivery.num_delivered,
            exit_code=result.exit_code,
            error=result.error,
            deployment_id=result.deployment_id,
            build_id=result.build_id,
            at=datetime.now(UTC),
        )
        await self.publish(
            run_event_subject(cmd.project_id, cmd.run_id),
            encode(event),
            f"{cmd.run_id}:{result.status}",
        )
        delivery.progress()


def _safe_id(run_id: str) -> bool:
    """A run id names a directory: nothing but a UUID's characters."""
    return bool(run_id) and all(c in "0123456789abcdef-" for c in run_id.lower())
