"""build-worker entry point: pull build jobs and run them, any number of workers side by side.

Runs the common skeleton (`libs.service`: NATS, JetStream, signals), registers the
`launchdeck-build-worker` micro-service (`nats micro ls`), and consumes `ld.jobs.build` from the
durable `build-workers` consumer until SIGTERM; builds still running then are handed back (nak)
and redelivered as their next attempt. It also listens to `ld.control.build.cancel` (core NATS,
every worker): a build cancelled on request stops where it runs (`cancel.py`).

Before it takes a job it finds out how builds will be confined (`sandbox.py`: bubblewrap, or a
loud warning that there is none) and removes the work directories and processes a predecessor
killed mid-build left behind (`workspace.reclaim`).
"""

from __future__ import annotations

import asyncio

from launchdeck.build_worker.container_engine import EngineMissing, find_engine
from launchdeck.build_worker.dependencies import keep_cache_within_limits
from launchdeck.build_worker.handler import BuildWorker, env_from_control_api
from launchdeck.build_worker.settings import Settings
from launchdeck.build_worker.workspace import reclaim
from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import BuildRequested
from launchdeck.libs.jetstream import public_nats_url
from launchdeck.libs.jobs import ConsumerSpec, consume
from launchdeck.libs.launcher.sandbox import Sandbox, SandboxUnavailable, detect_sandbox
from launchdeck.libs.logging import get_logger
from launchdeck.libs.service import Service, run_service
from launchdeck.libs.settings import SettingsError

log = get_logger(__name__)


def build_jobs(settings: Settings) -> ConsumerSpec[BuildRequested]:
    return ConsumerSpec(
        stream=s.STREAM_BUILDS,
        durable=s.CONSUMER_BUILD_WORKERS,
        subject=s.SUBJECT_BUILD_JOBS,
        message_type=BuildRequested,
        # Kept alive by in_progress() heartbeats while a build runs; after a worker dies
        # its build is redelivered once this expires.
        ack_wait_s=settings.ack_wait_s,
        max_deliver=3,
        # Heartbeats alone would keep a stuck build "building" forever: the watchdog fails an
        # attempt that stops making progress (handler.py says what counts).
        stall_timeout_s=settings.stall_timeout_s,
    )


def load_settings() -> Settings:
    """The settings; `LAUNCHDECK_BUILD_SANDBOX=bwrap` on a machine where bubblewrap does not
    work stops the worker at start, like a malformed variable."""
    settings = Settings.from_env()
    if settings.sandbox == "bwrap":
        try:
            detect_sandbox("bwrap", settings.sandbox_ro_paths)
        except SandboxUnavailable as exc:
            raise SettingsError(str(exc)) from None
    return settings


def announce_sandbox(sandbox: Sandbox) -> None:
    """One line at start saying how builds are confined; a warning when they are not."""
    if sandbox.enabled:
        log.info("build_sandbox", sandbox="bwrap", bwrap=sandbox.bwrap)
        return
    log.warning(
        "build_sandbox_unavailable",
        sandbox="none",
        reason=sandbox.reason,
        consequence=(
            "builds run WITHOUT a sandbox: their commands can read whatever this worker's user "
            "can, the platform's state included (see docs/operations.md)"
        ),
    )


def announce_engine(setting: str | None) -> None:
    """One line at start saying what Dockerfile apps are built with (or that they cannot be)."""
    try:
        engine = find_engine(setting)
    except EngineMissing as exc:
        log.warning("container_engine_missing", consequence=str(exc))
        return
    if engine is None:
        log.info(
            "container_engine_none",
            consequence="Dockerfile apps fail to build on this worker; other apps build as usual",
        )
        return
    log.info("container_engine", engine=engine.name, path=engine.path)


async def serve(service: Service[Settings]) -> None:
    settings = service.settings
    sandbox = await asyncio.to_thread(detect_sandbox, settings.sandbox, settings.sandbox_ro_paths)
    announce_sandbox(sandbox)
    announce_engine(settings.container_engine)
    reclaimed = await asyncio.to_thread(reclaim, settings.build_dir)
    if reclaimed.workdirs or reclaimed.pids:
        log.warning(
            "build_leftovers_removed",
            workdirs=reclaimed.workdirs,
            killed_pids=reclaimed.pids,
            build_dir=str(settings.build_dir),
        )
    # Each build's env vars come from the control-api (`ld.rpc.env`), waited for as long as
    # a publish waits for NATS past a build's time limit.
    project_env = env_from_control_api(service.nc, wait_s=settings.outage_grace_s)
    worker = BuildWorker(service.js, settings, sandbox, project_env=project_env)
    # Every worker hears every cancel (no queue group): the one running the build stops it.
    await service.nc.subscribe(s.SUBJECT_BUILD_CANCEL, cb=worker.cancellations.on_message)
    await service.register("Clones, builds and packages releases", worker.status)
    log.info(
        "build_worker_ready",
        nats_url=public_nats_url(settings.nats_url),
        build_dir=str(settings.build_dir),
        concurrency=settings.concurrency,
        allow_local_repos=settings.allow_local_repos,
        sandbox="bwrap" if sandbox.enabled else "none",
    )
    tasks = [
        asyncio.create_task(
            consume(
                service.js,
                build_jobs(settings),
                worker.handle_build,
                concurrency=settings.concurrency,
            ),
            name="build-jobs",
        )
    ]
    if settings.cache_dir is not None:
        tasks.append(
            asyncio.create_task(keep_cache_within_limits(settings), name="build-cache-pruning")
        )
    await service.run_until_stopped(*tasks)


def main() -> None:
    run_service(s.SERVICE_BUILD_WORKER, load_settings, serve)


if __name__ == "__main__":
    main()
