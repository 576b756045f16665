"""One build, start to finish: clone → install → build → package, reported as events and logs.

`BuildWorker.handle_build` is the job handler given to `libs.jobs.consume`. Failures split in two:
- `BuildFailed` (the project's fault: bad repository, failing command, unknown layout) → the build
  is reported `failed` with a readable `error` and the job is acknowledged;
- anything else (NATS unreachable, disk trouble) → the job is retried (`RETRY`), except on the
  last delivery, where the build is reported `failed` rather than left running forever.
A shutdown (cancellation) marks the log and hands the job back; the next attempt continues the
same log after a `▶ Attempt N` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
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
from launchdeck.build_worker.logs import LogPublisher, human_size, read_log_tail
from launchdeck.build_worker.package import pack
from launchdeck.build_worker.package_managers import invocation
from launchdeck.build_worker.run import build_env, build_path, parse_command, run_command
from launchdeck.build_worker.settings import Settings
from launchdeck.contracts.messages import Artifact, BuildRequested
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.logging import bind_ids, get_logger

log = get_logger(__name__)

INTERRUPT_FLUSH_S = 2.0


def _seconds(started: float) -> str:
    return f"{time.monotonic() - started:.1f}s"


class Deadline:
    """The build's time limit, shared by clone and commands."""

    def __init__(self, started: float, limit_s: float) -> None:
        self.started = started
        self.limit_s = limit_s

    def remaining(self) -> float:
        left = self.started + self.limit_s - time.monotonic()
        if left <= 0:
            raise BuildFailed(f"The build exceeded its time limit of {self.limit_s:.0f}s")
        return left


class BuildWorker:
    def __init__(self, js: JetStreamContext, settings: Settings) -> None:
        self._js = js
        self._settings = settings
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
        try:
            tail = await read_log_tail(self._js, cmd.build_id)
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
            max_bytes=self._settings.log_max_bytes,
            secrets=git_secrets(self._settings.git_token),
        )
        events = StatusReporter(self._js, cmd, attempt)
        self._running[cmd.build_id] = attempt
        # Created by the build itself, so a disk problem is handled like any other failure.
        workdir = self._settings.build_dir / f"{cmd.build_id}-{attempt}-{uuid.uuid4().hex[:8]}"
        log.info("build_started", attempt=attempt, ref=cmd.ref)
        try:
            return await self._attempt(cmd, delivery, logs, events, workdir)
        finally:
            self._running.pop(cmd.build_id, None)
            await logs.aclose()
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _attempt(
        self,
        cmd: BuildRequested,
        delivery: Delivery,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
    ) -> Outcome:
        started = time.monotonic()
        try:
            try:
                artifact = await self._build(cmd, delivery.num_delivered, logs, events, workdir)
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
            logs.system(
                "■ The worker is shutting down: this attempt stops here and the build "
                "will be retried"
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(logs.flush(), INTERRUPT_FLUSH_S)
            log.info("build_handed_back", step=events.step)
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
        log.error("build_attempt_error", attempt=attempt, step=step, exc_info=exc)
        if not delivery.last_attempt:
            self._finished["retried"] += 1
            logs.system(
                f"⚠ Attempt {attempt} stopped by an internal error "
                f"({type(exc).__name__}); the build will be retried"
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(logs.flush(), INTERRUPT_FLUSH_S)
            return Outcome.RETRY
        # The last delivery: report the build failed instead of leaving it "running" forever.
        error = (
            f"Internal error in the build-worker after {attempt} attempt(s): {type(exc).__name__}"
        )
        logs.system(f"✖ Build failed: {error}")
        try:
            await events.report("failed", step=step, error=error)
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
        attempt: int,
        logs: LogPublisher,
        events: StatusReporter,
        workdir: Path,
    ) -> Artifact:
        settings = self._settings
        deadline = Deadline(time.monotonic(), cmd.config.timeout_s or settings.timeout_s)
        if attempt > 1:
            logs.system(f"▶ Attempt {attempt} (previous attempt was interrupted)")
        await asyncio.to_thread(workdir.mkdir, parents=True)

        await events.report("cloning", step="clone")
        source = parse_repo_url(cmd.repo_url, allow_local=settings.allow_local_repos)
        logs.add_secrets(source.secrets)
        ref = cmd.ref.strip() or "HEAD"
        logs.system(f"▶ Cloning {source.display} (ref {ref})")
        started = time.monotonic()
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
            deadline.limit_s = plan.timeout_s
        await self._run_commands(cmd.project_id, plan, logs, events, workdir, deadline)

        await events.report("packaging", step="package")
        return await self._package(cmd.build_id, plan, logs, workdir)

    async def _run_commands(
        self,
        project_id: str,
        plan: BuildPlan,
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
                project_id,
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
            took = await run_command(
                how.argv,
                cwd=plan.root,
                env={**env, **how.env},
                sink=logs.write,
                timeout_s=deadline.remaining(),
            )
            logs.system(f"✔ {label} finished in {took:.1f}s")
            if install is not None:
                await install.save()
            await logs.flush()

    async def _package(
        self, build_id: str, plan: BuildPlan, logs: LogPublisher, workdir: Path
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
        artifact = await upload_artifact(self._js, build_id, package)
        logs.system(
            f"✔ Packaged {package.files} file{'' if package.files == 1 else 's'} "
            f"({human_size(package.size)}, sha256 "
            f"{package.sha256[:12]}) in {_seconds(started)}"
        )
        return artifact
