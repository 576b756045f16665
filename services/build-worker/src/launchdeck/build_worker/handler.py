"""One build, start to finish: clone → install → build → package, reported as events and logs.

`BuildWorker.handle_build` is the job handler given to `libs.jobs.consume`. Failures split in two:
- `BuildFailed` (the project's fault: bad repository, failing command, unknown layout) → the build
  is reported `failed` with a readable `error` and the job is acknowledged;
- anything else (NATS unreachable, disk trouble) → the job is retried (`RETRY`), except on the
  last delivery, where the build is reported `failed` rather than left running forever.
A shutdown (cancellation) marks the log and hands the job back; the next attempt continues the
same log after a `▶ Attempt N` line.

A Dockerfile app (`detect.py`, kind "container") runs no install or build command: its image is
built by the container engine (`container_build.py`, outside the sandbox) and saved with its
manifest into the release, packaged like any other.

A build cancelled on request (`cancel.py`) is different: it is over. A job whose build was
cancelled before it ran is acknowledged without running anything — its log gets an end
(`■ Cancelled before it started`) if the control-api could not write one, and the `cancelled`
status; a running build is stopped (its process group and whatever it left running killed),
its log says `■ Cancelled`, and it is reported `cancelled` (reason `cancelled`). A build past its
time limit fails with reason `timeout`, its processes killed the same way (`BuildTimedOut`).

Env vars: at the start of each attempt the build's project variables of target `build` are
asked of the control-api (`ld.rpc.env`, `project_env`), given to the install and build commands
(`run.build_env`) and masked as `***` in every log line from then on. A refusal fails the build
naming why; no answer fails the attempt (retried): a build never runs without its variables.

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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.build_worker.artifacts import upload_artifact
from launchdeck.build_worker.cancel import BuildCancelled, Cancellations
from launchdeck.build_worker.clone import clone, git_env, git_secrets, parse_repo_url
from launchdeck.build_worker.container_build import ContainerJob, build_image
from launchdeck.build_worker.container_engine import (
    engine_env,
    require_engine,
    worker_environment,
)
from launchdeck.build_worker.dependencies import CachedInstall
from launchdeck.build_worker.detect import BuildPlan, detect, resolve_output
from launchdeck.build_worker.errors import BuildFailed, BuildTimedOut
from launchdeck.build_worker.events import StatusReporter
from launchdeck.build_worker.logs import LogPublisher, LogTail, human_size, read_log_tail
from launchdeck.build_worker.package_managers import invocation
from launchdeck.build_worker.release import build_env as app_build_env
from launchdeck.build_worker.release import describe, prepare_release, processes_line
from launchdeck.build_worker.run import build_env, build_path, parse_command, run_command
from launchdeck.build_worker.runtimes import probe_runtimes, stdout_collector
from launchdeck.build_worker.settings import Settings
from launchdeck.build_worker.workspace import claim, release
from launchdeck.contracts.messages import (
    BUILD_REASON_CANCELLED,
    Artifact,
    BuildRequested,
    EnvRequest,
)
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.libs.env_client import EnvRefused, EnvUnavailable, fetch_env
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.sandbox import BuildSandbox, Sandbox, detect_sandbox
from launchdeck.libs.logging import bind_ids, get_logger
from launchdeck.libs.publish import NatsUnavailable
from launchdeck.libs.tarball import NothingToShip, pack

log = get_logger(__name__)

INTERRUPT_FLUSH_S = 2.0
# `node --version` and the like, asked at the end of a process app's build (`runtimes.py`).
RUNTIME_PROBE_TIMEOUT_S = 30.0
# A failure report made after the attempt's deadline passed still waits this long for NATS.
LAST_REPORT_S = 30.0
# The `error` of a build cancelled on request.
CANCELLED_ERROR = "Cancelled on request"
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

    def remaining(self, next_step: str = "its next step") -> float:
        """Seconds left; BuildTimedOut when none are (`next_step` is what could not start)."""
        left = self.started + self.limit_s - time.monotonic()
        if left <= 0:
            raise BuildTimedOut(f"before {next_step} could start", self.limit_s)
        return left

    def outage_until(self) -> float:
        """Until when (`time.monotonic()`) this attempt's publishes wait for NATS."""
        return self.started + self.limit_s + self.grace_s


# Where a build's env vars (its project's `build` target) come from: `env_from_control_api`,
# or None for a worker that builds without any (the tests of everything else).
ProjectEnv = Callable[[BuildRequested], Awaitable[dict[str, str]]]


def env_from_control_api(nc: Client, *, wait_s: float) -> ProjectEnv:
    """A build's variables asked of the control-api (`ld.rpc.env`, `libs.env_client`), waiting
    up to `wait_s` for an answer (a control-api restarting) before the attempt fails."""

    async def fetch(cmd: BuildRequested) -> dict[str, str]:
        request = EnvRequest(project_id=cmd.project_id, target="build", build_id=cmd.build_id)
        return await fetch_env(nc, request, wait_s=wait_s)

    return fetch


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
        self,
        js: JetStreamContext,
        settings: Settings,
        sandbox: Sandbox | None = None,
        *,
        project_env: ProjectEnv | None = None,
    ) -> None:
        self._js = js
        self._settings = settings
        self._project_env = project_env
        # How builds are confined (`sandbox.py`); main detects it once and logs it at start.
        self._sandbox = sandbox or detect_sandbox(settings.sandbox, settings.sandbox_ro_paths)
        self._locks: dict[Path, int] = {}  # work directory → its lock (`workspace.py`)
        self._running: dict[str, int] = {}
        self._finished = {"succeeded": 0, "failed": 0, "cancelled": 0, "retried": 0}
        # Cancel requests: `main` subscribes `on_message` to `ld.control.build.cancel`.
        self.cancellations = Cancellations(js)

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
        # Listening for a cancel of this build from the start: one heard while the mark is read
        # below still stops it.
        with self.cancellations.watch(cmd.build_id):
            return await self._handle_build(cmd, delivery)

    async def _handle_build(self, cmd: BuildRequested, delivery: Delivery) -> Outcome:
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
            # An earlier attempt reported the end but its ack was lost, or the build was
            # cancelled while queued and its log ended then: the result stands.
            log.info("build_already_finished", status=tail.status, attempt=attempt)
            return Outcome.ACK
        try:
            cancelled = await self.cancellations.requested(cmd.build_id)
        except Exception as exc:
            log.warning("build_cancel_mark_unreadable", error=str(exc), attempt=attempt)
            return Outcome.RETRY
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
        if cancelled is not None:
            return await self._drop_cancelled(logs, events, fresh=tail.last_seq == 0)
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

    async def _drop_cancelled(
        self, logs: LogPublisher, events: StatusReporter, *, fresh: bool
    ) -> Outcome:
        """A job whose build was cancelled (its mark is in the `cancellations` bucket): nothing
        runs; the log gets the end the control-api could not write, the status `cancelled`
        (the control-api ignores it when it has marked the build already, and takes it when it
        crashed between writing the mark and recording the cancel), and the job is acked."""
        try:
            logs.system("■ Cancelled before it started" if fresh else "■ Cancelled: not run again")
            await logs.flush()
            await events.report("cancelled", error=CANCELLED_ERROR, reason=BUILD_REASON_CANCELLED)
            await logs.close("cancelled")
        except Exception as exc:
            log.warning("build_cancel_unreported", error=str(exc))
            return Outcome.RETRY
        finally:
            await logs.aclose()
        log.info("build_dropped_cancelled")
        self._finished["cancelled"] += 1
        return Outcome.ACK

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
                artifact = await self.cancellations.guard(
                    cmd.build_id, self._build(cmd, delivery, logs, events, workdir, deadline)
                )
            except BuildCancelled:
                # Its processes are gone (`run_command` killed them as it was cancelled).
                logs.system(f"■ Cancelled after {_seconds(started)}: its processes were stopped")
                await logs.flush()
                await events.report(
                    "cancelled",
                    step=events.step,
                    error=CANCELLED_ERROR,
                    reason=BUILD_REASON_CANCELLED,
                )
                await logs.close("cancelled")
                self._finished["cancelled"] += 1
                log.info("build_cancelled", step=events.step)
                return Outcome.ACK
            except BuildFailed as exc:
                if isinstance(exc, BuildTimedOut) and exc.limit_s is None:
                    exc = exc.with_limit(deadline.limit_s)
                error = logs.mask(str(exc))  # git may echo a URL's password back
                logs.system(f"✖ Build failed: {error}")
                await logs.flush()
                await events.report("failed", step=events.step, error=error, reason=exc.reason)
                await logs.close("failed")
                self._finished["failed"] += 1
                log.info("build_failed", error=error, step=events.step, reason=exc.reason)
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
        project_vars = await self._project_vars(cmd, delivery, logs)

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
                timeout_s=deadline.remaining("cloning"),
            )
        events.commit_sha = checkout.commit_sha
        events.commit_message = checkout.commit_message
        logs.system(f"✔ Cloned {checkout.commit_sha[:7]} in {_seconds(started)}")

        plan = await asyncio.to_thread(detect, checkout.path, cmd.config)
        logs.system(f"▶ Detected {plan.description}")
        if plan.timeout_s:
            deadline.limit_s, clamped = settings.time_limit(plan.timeout_s)
            if clamped:
                logs.system(
                    f"⚠ timeout_s = {plan.timeout_s} is above this platform's maximum: the "
                    f"build's time limit is {deadline.limit_s}s"
                )
        if plan.kind == "container":
            return await self._build_container(
                cmd, plan, logs, events, workdir, deadline, project_vars
            )
        runtime = await self._run_commands(
            cmd, plan, delivery, logs, events, workdir, deadline, project_vars
        )

        await events.report("packaging", step="package")
        return await self._package(cmd.build_id, plan, logs, workdir, deadline, runtime)

    async def _run_commands(
        self,
        cmd: BuildRequested,
        plan: BuildPlan,
        delivery: Delivery,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
        deadline: Deadline,
        project_vars: dict[str, str],
    ) -> dict[str, str]:
        """Install, build and (a process app) prune, with the project's `build` variables;
        returns the runtime versions a process app's manifest records."""
        home = workdir / "home"
        home.mkdir()
        deps: CachedInstall | None = None
        if self._settings.cache_dir is not None and (plan.install_command or plan.python_install):
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
        # The attempt's own temporary directory: the sandbox shows it as /tmp.
        tmpdir = workdir / "tmp"
        tmpdir.mkdir(exist_ok=True)
        env = build_env(
            home,
            project_vars,
            tmpdir=Path("/tmp") if self._sandbox.enabled else tmpdir,
            passthrough=self._settings.build_env_passthrough,
            tools=deps.env if deps is not None else None,
        )
        env.update(app_build_env(plan, home, env))  # `python`, the Python dependencies
        sandbox = self._sandbox.for_build(
            workdir=workdir,
            writable=[Path(p) for p in deps.env.values()] if deps is not None else (),
            private=self._private_dirs(),
        )
        steps: tuple[tuple[BuildStatus, str, str, str | None], ...] = (
            ("installing", "install", "Install", plan.install_command),
            ("installing", "python-install", "Install Python dependencies", plan.python_install),
            ("building", "build", "Build", plan.build_command),
            ("building", "prune", "Prune dev dependencies", plan.prune_command),
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
            try:
                with delivery.working():  # bounded by the build's time limit, however quiet
                    took = await run_command(
                        how.argv,
                        cwd=plan.root,
                        env={**env, **how.env},
                        sink=logs.write_output,  # a build printing faster than NATS waits
                        timeout_s=deadline.remaining(),
                        marker=str(workdir),  # how its leftovers are found (`workspace.py`)
                        sandbox=sandbox,
                        limits=self._settings.limits,
                    )
            except BuildFailed as exc:
                if name != "prune":
                    raise
                # Dev dependencies shipped are only weight: the app runs the same with them.
                logs.system(f"⚠ {label} failed ({exc}): the release keeps them")
                await logs.flush()
                continue
            logs.system(f"✔ {label} finished in {took:.1f}s")
            if install is not None:
                await install.save()
            await logs.flush()
        if plan.kind != "process":
            return {}
        return await self._probe_runtimes(plan, env, workdir, deadline, logs, sandbox)

    async def _build_container(
        self,
        cmd: BuildRequested,
        plan: BuildPlan,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
        deadline: Deadline,
        project_vars: dict[str, str],
    ) -> Artifact:
        """A Dockerfile app: its image built by the container engine (`container_build.py`),
        saved into a release with its manifest, packaged like any release."""
        engine = require_engine(self._settings.container_engine)
        await events.report("building", step="image")
        tmpdir = workdir / "tmp"
        tmpdir.mkdir(exist_ok=True)
        base = build_env(
            workdir / "home", tmpdir=tmpdir, passthrough=self._settings.build_env_passthrough
        )
        job = ContainerJob(
            engine=engine,
            plan=plan,
            project=cmd.project_name,
            build_id=cmd.build_id,
            project_vars=project_vars,
            env=engine_env(base, worker_environment()),
            workdir=workdir,
            sink=logs.write_output,
            say=logs.system,
            time_left=deadline.remaining,
        )
        image = await build_image(job)
        await logs.flush()
        await events.report("packaging", step="package")
        logs.system(processes_line(image.manifest))
        logs.system("▶ Packaging the image archive and release.json")
        started = time.monotonic()
        package = await asyncio.to_thread(
            pack, image.release, workdir / "artifact.tar.gz", label="the container release"
        )
        artifact = await upload_artifact(
            self._js, cmd.build_id, package, deadline=deadline.outage_until()
        )
        logs.system(
            f"✔ Packaged the release ({human_size(package.size)}, sha256 "
            f"{package.sha256[:12]}) in {_seconds(started)}"
        )
        facts = image.facts
        ports = ", ".join(map(str, facts.ports)) or "none"
        logs.system(
            f"✔ Image {facts.id} ({human_size(facts.size)} unpacked, "
            f"{human_size(image.archive_size)} archive; EXPOSE {ports})"
        )
        return describe(artifact, image.manifest)

    async def _probe_runtimes(
        self,
        plan: BuildPlan,
        env: dict[str, str],
        workdir: Path,
        deadline: Deadline,
        logs: LogPublisher,
        sandbox: BuildSandbox | None,
    ) -> dict[str, str]:
        """The Node.js and Python versions the build ran with, asked like its commands."""

        async def run(argv: Sequence[str]) -> list[str]:
            lines, sink = stdout_collector()
            left = deadline.remaining()
            try:
                await run_command(
                    argv,
                    cwd=plan.root,
                    env=env,
                    sink=sink,
                    timeout_s=min(RUNTIME_PROBE_TIMEOUT_S, left),
                    marker=str(workdir),
                    sandbox=sandbox,
                    limits=self._settings.limits,
                )
            except BuildTimedOut:
                if left <= RUNTIME_PROBE_TIMEOUT_S:
                    raise  # the build's own time limit
                raise BuildFailed(f"`{argv[0]}` did not say its version") from None
            return lines

        runtime = await probe_runtimes(plan.runtimes, run)
        if runtime:
            logs.system("▶ Runtime: " + ", ".join(f"{k} {v}" for k, v in runtime.items()))
        return runtime

    async def _project_vars(
        self, cmd: BuildRequested, delivery: Delivery, logs: LogPublisher
    ) -> dict[str, str]:
        """The project's `build` env vars, fetched for this attempt and masked in its log from
        now on. A refusal (the build is no longer running…) fails the build; no answer fails
        the attempt (retried), never runs the build without its variables."""
        if self._project_env is None:
            return {}
        try:
            with delivery.working():  # a wait with a limit of its own (`wait_s`)
                values = await self._project_env(cmd)
        except EnvRefused as exc:
            raise BuildFailed(f"Could not get the project's env vars: {exc.reason}") from None
        except EnvUnavailable as exc:
            logs.system(f"⚠ Could not get the project's env vars: {exc}")
            raise
        logs.add_secrets(values.values())
        if values:
            logs.system(f"▶ Env vars: {', '.join(sorted(values))}")  # names only
        return values

    def _private_dirs(self) -> list[Path]:
        """The platform's directories a sandboxed build must never see."""
        settings = self._settings
        dirs = (settings.state_dir, settings.build_dir, settings.cache_dir)
        return [d for d in dirs if d is not None]

    async def _package(
        self,
        build_id: str,
        plan: BuildPlan,
        logs: LogPublisher,
        workdir: Path,
        deadline: Deadline,
        runtime: dict[str, str],
    ) -> Artifact:
        output = resolve_output(plan)
        manifest = None
        if plan.kind == "process":  # the release is the app's root, with its manifest
            manifest = await asyncio.to_thread(prepare_release, plan, runtime)
            logs.system(processes_line(manifest))
        rel = output.relative_to(plan.checkout).as_posix()
        label = "the repository root" if rel == "." else f"{rel}/"
        logs.system(f"▶ Packaging {label}")
        started = time.monotonic()
        try:
            package = await asyncio.to_thread(
                pack, output, workdir / "artifact.tar.gz", label=label
            )
        except NothingToShip as exc:
            raise BuildFailed(str(exc)) from None
        for entry in package.skipped:
            logs.system(f"⚠ Left out {entry}")
        if manifest is None and not (output / "index.html").is_file():
            logs.system(f"⚠ {label} has no index.html at its top level")
        artifact = await upload_artifact(
            self._js, build_id, package, deadline=deadline.outage_until()
        )
        logs.system(
            f"✔ Packaged {package.files} file{'' if package.files == 1 else 's'} "
            f"({human_size(package.size)}, sha256 "
            f"{package.sha256[:12]}) in {_seconds(started)}"
        )
        return describe(artifact, manifest) if manifest is not None else artifact


def _nats_unavailable(exc: BaseException) -> NatsUnavailable | None:
    """The `NatsUnavailable` behind `exc` (raised as is, or as the cause of a log publisher's
    error), if that is why the attempt stopped."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NatsUnavailable):
            return seen
        seen = seen.__cause__
    return None
