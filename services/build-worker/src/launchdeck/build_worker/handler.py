"""One build, start to finish: clone → install → build → package, reported as events and logs.

`BuildWorker.handle_build` is the job handler given to `libs.jobs.consume`. Failures split in two:
- `BuildFailed` (the project's fault: bad repository, failing command, unknown layout) → the build
  is reported `failed` with a readable `error` and the job is acknowledged;
- anything else (NATS unreachable, disk trouble) → the job is retried (`RETRY`), except on the
  last delivery, where the build is reported `failed` rather than left running forever.
A shutdown (cancellation) marks the log and hands the job back; the next attempt continues the
same log after a `▶ Attempt N` line.

NATS away mid-build: every log batch, status event and the artifact upload waits for it
(`libs.publish`) until the attempt's deadline — the build's time limit plus
`Settings.outage_grace_s` — and then fails the attempt (`RETRY`, or `failed` on the last
delivery) instead of leaving it heartbeating. The watchdog of `libs.jobs` backs that up: an
attempt without progress (a stored log batch or event; a running command counts as working) for
`Settings.stall_timeout_s` is cancelled and redelivered. After the next attempt's `▶ Attempt N`
line, a `⚠` line says where the previous one's log breaks off when it could not say so itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

from nats.js import JetStreamContext

from launchdeck.build_worker.artifacts import upload_artifact
from launchdeck.build_worker.clone import clone, git_env, git_secrets, parse_repo_url
from launchdeck.build_worker.dependencies import CachedInstall
from launchdeck.build_worker.detect import BuildPlan, detect, resolve_output
from launchdeck.build_worker.errors import BuildFailed
from launchdeck.build_worker.events import StatusReporter
from launchdeck.build_worker.logs import LogPublisher, LogTail, human_size, read_log_tail
from launchdeck.build_worker.package import pack
from launchdeck.build_worker.package_managers import invocation
from launchdeck.build_worker.run import build_env, build_path, parse_command, run_command
from launchdeck.build_worker.settings import Settings
from launchdeck.build_worker.workspace import claim, release
from launchdeck.contracts.messages import Artifact, BuildRequested
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.sandbox import Sandbox, detect_sandbox
from launchdeck.libs.logging import bind_ids, get_logger
from launchdeck.libs.publish import NatsUnavailable

log = get_logger(__name__)

INTERRUPT_FLUSH_S = 2.0
# A failure report made after the attempt's deadline passed still waits this long for NATS.
LAST_REPORT_S = 30.0
# How an attempt's last stored line says why it stopped (shutdown, stall, NATS, internal error).
EXPLAINED_ENDINGS = ("■", "⚠ Attempt", "✖")


def _seconds(started: float) -> str:
    return f"{time.monotonic() - started:.1f}s"


class Deadline:
    """The build's time limit, shared by clone and commands; plus a grace for what follows them
    (packaging, the last log lines and events), which is how long publishing waits for NATS."""

    def __init__(self, started: float, limit_s: float, grace_s: float = 0.0) -> None:
        self.started = started
        self.limit_s = limit_s
        self.grace_s = grace_s

    def remaining(self) -> float:
        left = self.started + self.limit_s - time.monotonic()
        if left <= 0:
            raise BuildFailed(f"The build exceeded its time limit of {self.limit_s:.0f}s")
        return left

    def outage_until(self) -> float:
        """Until when (`time.monotonic()`) this attempt's publishes wait for NATS."""
        return self.started + self.limit_s + self.grace_s


def attempt_lines(attempt: int, tail: LogTail) -> list[str]:
    """The first lines of a redelivered attempt: `▶ Attempt N`, and, when the previous attempt
    could not store why it stopped (its worker died, it lost NATS), where its log breaks off and
    that what it printed after that is missing."""
    lines = [f"▶ Attempt {attempt} (previous attempt was interrupted)"]
    last = tail.last_line
    if last is not None and last.stream == "system" and last.line.startswith(EXPLAINED_ENDINGS):
        return lines  # it said why itself, right above
    if last is None:
        lines.append(
            "⚠ The previous attempt stored no log: its worker stopped or lost NATS before its "
            "first line got through"
        )
    else:
        lines.append(
            f"⚠ The previous attempt's log ends at line {tail.last_seq} without a reason: its "
            "worker stopped or lost NATS, and what it printed after that line was not recorded"
        )
    return lines


class BuildWorker:
    def __init__(
        self, js: JetStreamContext, settings: Settings, sandbox: Sandbox | None = None
    ) -> None:
        self._js = js
        self._settings = settings
        # How builds are confined (`sandbox.py`); main detects it once and logs it at start.
        self._sandbox = sandbox or detect_sandbox(settings.sandbox, settings.sandbox_ro_paths)
        self._locks: dict[Path, int] = {}  # work directory → its lock (`workspace.py`)
        self._running: dict[str, int] = {}
        self._finished = {"succeeded": 0, "failed": 0, "retried": 0}

    def status(self) -> dict[str, object]:
        """For the micro-service `status` endpoint."""
        return {
            "builds_running": [
                {"build_id": b, "attempt": a} for b, a in sorted(self._running.items())
            ],
            "concurrency": self._settings.concurrency,
            **{f"builds_{k}": v for k, v in self._finished.items()},
        }

    async def handle_build(self, cmd: BuildRequested, delivery: Delivery) -> Outcome:
        attempt = delivery.num_delivered
        bind_ids(build_id=cmd.build_id, project_id=cmd.project_id)
        settings = self._settings
        # Clamped silently here; once launchdeck.toml is read, the log says so (`_build`).
        deadline = Deadline(
            time.monotonic(), settings.time_limit(cmd.config.timeout_s)[0], settings.outage_grace_s
        )
        try:
            tail = await read_log_tail(self._js, cmd.build_id, deadline=deadline.outage_until())
        except Exception as exc:
            log.warning("build_log_unreadable", error=str(exc), attempt=attempt)
            return Outcome.RETRY
        if tail.finished:
            # An earlier attempt reported the end but its ack was lost: the result stands.
            log.info("build_already_finished", status=tail.status, attempt=attempt)
            return Outcome.ACK
        logs = LogPublisher(
            self._js,
            cmd.build_id,
            attempt=attempt,
            first_seq=tail.last_seq + 1,
            max_bytes=settings.log_max_bytes,
            secrets=git_secrets(settings.git_token),
            buffer_lines=settings.log_buffer_lines,
            deadline=deadline.outage_until,
            on_sent=delivery.progress,
        )
        events = StatusReporter(
            self._js, cmd, attempt, deadline=deadline.outage_until, on_stored=delivery.progress
        )
        if attempt > 1:
            for line in attempt_lines(attempt, tail):
                logs.system(line)
        if not self._sandbox.enabled:
            logs.system(self._sandbox.build_log_warning())  # never silently
        self._running[cmd.build_id] = attempt
        # Created by the build itself, so a disk problem is handled like any other failure.
        workdir = self._settings.build_dir / f"{cmd.build_id}-{attempt}-{uuid.uuid4().hex[:8]}"
        log.info("build_started", attempt=attempt, ref=cmd.ref)
        try:
            return await self._attempt(cmd, delivery, logs, events, workdir, deadline)
        finally:
            self._running.pop(cmd.build_id, None)
            await logs.aclose()
            # Kills what the build left running (by its marker), then removes it.
            await asyncio.to_thread(release, workdir, self._locks.pop(workdir, None))

    async def _attempt(
        self,
        cmd: BuildRequested,
        delivery: Delivery,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
        deadline: Deadline,
    ) -> Outcome:
        started = time.monotonic()
        try:
            try:
                artifact = await self._build(cmd, delivery, logs, events, workdir, deadline)
            except BuildFailed as exc:
                error = logs.mask(str(exc))  # git may echo a URL's password back
                logs.system(f"✖ Build failed: {error}")
                await logs.flush()
                await events.report("failed", step=events.step, error=error)
                await logs.close("failed")
                self._finished["failed"] += 1
                log.info("build_failed", error=error, step=events.step)
                return Outcome.ACK
            logs.system(f"✔ Build succeeded in {_seconds(started)}")
            await logs.flush()
            await events.report("succeeded", artifact=artifact)
            await logs.close("succeeded")
            self._finished["succeeded"] += 1
            log.info("build_succeeded", artifact=artifact.key, size=artifact.size)
            return Outcome.ACK
        except asyncio.CancelledError:
            stalled_s = delivery.stalled_s
            if stalled_s is not None:  # the watchdog of libs.jobs, not a shutdown
                logs.system(
                    f"■ No progress for {stalled_s:.0f}s: this attempt stops here and the build "
                    "will be retried"
                )
            else:
                logs.system(
                    "■ The worker is shutting down: this attempt stops here and the build "
                    "will be retried"
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(logs.flush(), INTERRUPT_FLUSH_S)
            log.info("build_handed_back", step=events.step, stalled_s=stalled_s)
            raise
        except Exception as exc:
            return await self._infrastructure_failure(exc, delivery, logs, events)

    async def _infrastructure_failure(
        self,
        exc: Exception,
        delivery: Delivery,
        logs: LogPublisher,
        events: StatusReporter,
    ) -> Outcome:
        attempt = delivery.num_delivered
        step = events.step
        unavailable = _nats_unavailable(exc)
        if unavailable is not None:
            # Not a bug: NATS stayed away past the attempt's deadline. Said plainly, no traceback.
            reason = f"NATS was unavailable for {unavailable.waited_s:.0f}s"
            stopped = f"stopped: {reason}"
            log.error("build_attempt_error", attempt=attempt, step=step, error=str(unavailable))
        else:
            reason = f"an internal error ({type(exc).__name__})"
            stopped = f"stopped by {reason}"
            log.error("build_attempt_error", attempt=attempt, step=step, exc_info=exc)
        if not delivery.last_attempt:
            self._finished["retried"] += 1
            logs.system(f"⚠ Attempt {attempt} {stopped}; the build will be retried")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(logs.flush(), INTERRUPT_FLUSH_S)
            return Outcome.RETRY
        # The last delivery: report the build failed instead of leaving it "running" forever.
        if unavailable is not None:
            error = f"The build-worker gave up after {attempt} attempt(s): {reason}"
        else:
            error = (
                f"Internal error in the build-worker after {attempt} attempt(s): "
                f"{type(exc).__name__}"
            )
        logs.system(f"✖ Build failed: {error}")
        try:
            last_chance = max(time.monotonic() + LAST_REPORT_S, events.deadline())
            await events.report("failed", step=step, error=error, deadline=last_chance)
        except Exception as report_exc:
            log.error("build_failure_unreported", error=str(report_exc))
            return Outcome.RETRY  # nothing more will be delivered; the advisory tells the rest
        with contextlib.suppress(Exception):
            await logs.close("failed")
        self._finished["failed"] += 1
        return Outcome.ACK

    async def _build(
        self,
        cmd: BuildRequested,
        delivery: Delivery,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
        deadline: Deadline,
    ) -> Artifact:
        settings = self._settings
        self._locks[workdir] = await asyncio.to_thread(claim, workdir)

        await events.report("cloning", step="clone")
        source = parse_repo_url(cmd.repo_url, allow_local=settings.allow_local_repos)
        logs.add_secrets(source.secrets)
        ref = cmd.ref.strip() or "HEAD"
        logs.system(f"▶ Cloning {source.display} (ref {ref})")
        started = time.monotonic()
        with delivery.working():  # bounded by the build's time limit, however quiet
            checkout = await clone(
                source,
                ref,
                workdir / "src",
                env=git_env(source, token=settings.git_token, token_hosts=settings.git_token_hosts),
                timeout_s=deadline.remaining(),
            )
        events.commit_sha = checkout.commit_sha
        events.commit_message = checkout.commit_message
        logs.system(f"✔ Cloned {checkout.commit_sha[:7]} in {_seconds(started)}")

        plan = await asyncio.to_thread(detect, checkout.path, cmd.config)
        logs.system(f"▶ Detected {plan.description}")
        if plan.kind == "process":
            raise BuildFailed(
                f"Detected a {plan.description}, but process apps are not supported yet; "
                "to deploy a static site set output_dir (and build_command if it needs building)"
            )
        if plan.timeout_s:
            deadline.limit_s, clamped = settings.time_limit(plan.timeout_s)
            if clamped:
                logs.system(
                    f"⚠ timeout_s = {plan.timeout_s} is above this platform's maximum: the "
                    f"build's time limit is {deadline.limit_s}s"
                )
        await self._run_commands(cmd, plan, delivery, logs, events, workdir, deadline)

        await events.report("packaging", step="package")
        return await self._package(cmd.build_id, plan, logs, workdir, deadline)

    async def _run_commands(
        self,
        cmd: BuildRequested,
        plan: BuildPlan,
        delivery: Delivery,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
        deadline: Deadline,
    ) -> None:
        home = workdir / "home"
        home.mkdir()
        deps: CachedInstall | None = None
        if self._settings.cache_dir is not None and plan.install_command:
            deps = await CachedInstall.open(
                self._settings.cache_dir,
                self._settings.cache_keep,
                cmd.project_id,
                cmd.environment,  # preview and production builds never share a cache
                plan,
                home,
                build_path(),
                logs.system,
            )
        env = build_env(
            home,
            passthrough=self._settings.build_env_passthrough,
            tools=deps.env if deps is not None else None,
        )
        sandbox = self._sandbox.for_build(
            workdir=workdir,
            writable=[Path(p) for p in deps.env.values()] if deps is not None else (),
            private=self._private_dirs(),
        )
        steps: tuple[tuple[BuildStatus, str, str, str | None], ...] = (
            ("installing", "install", "Install", plan.install_command),
            ("building", "build", "Build", plan.build_command),
        )
        for status, name, label, command in steps:
            if not command:
                continue
            await events.report(status, step=name)
            install = deps if name == "install" else None
            if install is not None:
                if await install.restore():
                    await logs.flush()
                    continue  # the install step's output is back: nothing to install
                await install.watch()
            logs.system(f"▶ {label}: {command}")
            how = invocation(parse_command(command), plan.root, env)
            if how.note:
                logs.system(f"▶ {how.note}")
            with delivery.working():  # bounded by the build's time limit, however quiet
                took = await run_command(
                    how.argv,
                    cwd=plan.root,
                    env={**env, **how.env},
                    sink=logs.write,
                    timeout_s=deadline.remaining(),
                    marker=str(workdir),  # how its leftovers are found (`workspace.py`)
                    sandbox=sandbox,
                )
            logs.system(f"✔ {label} finished in {took:.1f}s")
            if install is not None:
                await install.save()
            await logs.flush()

    def _private_dirs(self) -> list[Path]:
        """The platform's directories a sandboxed build must never see."""
        settings = self._settings
        dirs = (settings.state_dir, settings.build_dir, settings.cache_dir)
        return [d for d in dirs if d is not None]

    async def _package(
        self, build_id: str, plan: BuildPlan, logs: LogPublisher, workdir: Path, deadline: Deadline
    ) -> Artifact:
        output = resolve_output(plan)
        rel = output.relative_to(plan.checkout).as_posix()
        label = "the repository root" if rel == "." else f"{rel}/"
        logs.system(f"▶ Packaging {label}")
        started = time.monotonic()
        package = await asyncio.to_thread(pack, output, workdir / "artifact.tar.gz", label=label)
        for entry in package.skipped:
            logs.system(f"⚠ Left out {entry}")
        if not (output / "index.html").is_file():
            logs.system(f"⚠ {label} has no index.html at its top level")
        artifact = await upload_artifact(
            self._js, build_id, package, deadline=deadline.outage_until()
        )
        logs.system(
            f"✔ Packaged {package.files} file{'' if package.files == 1 else 's'} "
            f"({human_size(package.size)}, sha256 "
            f"{package.sha256[:12]}) in {_seconds(started)}"
        )
        return artifact


def _nats_unavailable(exc: BaseException) -> NatsUnavailable | None:
    """The `NatsUnavailable` behind `exc` (raised as is, or as the cause of a log publisher's
    error), if that is why the attempt stopped."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NatsUnavailable):
            return seen
        seen = seen.__cause__
    return None
