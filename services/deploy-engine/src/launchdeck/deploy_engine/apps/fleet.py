"""Every app process this engine runs: starting, readiness, supervision, draining, recovery.

An `Instance` is one process type of one deployment in one slot (records.py); the fleet holds
them all, in memory and on disk. It does not decide what a deploy does (activation.py does):
it starts a deployment's processes and says whether they are ready, marks which are live and
which are replaced, drains and stops the replaced ones, restarts crashed ones (supervisor.py),
reports a deployment `unhealthy` and `active` again, keeps at most `max_previews` preview slots
running per project, and says what each project's routes must serve (`Targets`).

Recovery (`recover`, at every start, before any deploy is taken): the previous engine may have
died (SIGKILL, OOM) or stopped; its apps did not (process.py). Each record is looked at:

- `serving`: adopted when its process still runs (the same pid *and* start time, carrying the
  instance's marker) — it never stopped serving; otherwise started again at once, with its
  env vars fetched again — the deployment's own, as before, without a rebuild;
- `draining`: adopted and stopped (its successor is live);
- `starting` (a candidate of an activation the engine did not finish): killed — the deploy
  command was not acked and is redelivered, which starts a new candidate.

Then every process still carrying the marker of an instance that is not adopted is killed (and
every container labelled as such an instance removed: container.py), and
directories without a record are removed: whatever the previous engine started and did not
record, nothing is left running unknown — and there are never two copies of one instance, since
an instance is started again only when its recorded process is gone. An exclusive lock on the
apps directory (records.py) keeps a second engine from recovering the same apps at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import (
    DeploymentStatusChanged,
    DeployRequested,
    ReleaseManifest,
)
from launchdeck.contracts.statuses import DeploymentStatus
from launchdeck.contracts.subjects import deployment_event_subject
from launchdeck.deploy_engine import edge_routes as er
from launchdeck.deploy_engine.apps.app_logs import AppLogs, AppOutput
from launchdeck.deploy_engine.apps.container import (
    ENV_FILE,
    ContainerEngine,
    ContainerProcess,
    Limits,
    NoContainerEngine,
    container_environment,
    container_name,
    no_engine_reason,
    write_env_file,
)
from launchdeck.deploy_engine.apps.env import EnvSource, app_environment, platform_vars
from launchdeck.deploy_engine.apps.health_check import check_health
from launchdeck.deploy_engine.apps.ports import Ports, bindable
from launchdeck.deploy_engine.apps.process import AppProcess, SpawnFailed
from launchdeck.deploy_engine.apps.records import (
    PRODUCTION,
    InstanceRecord,
    InstanceStore,
    new_instance_id,
    preview_slot,
    slot_of,
)
from launchdeck.deploy_engine.apps.supervisor import supervise
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.settings import AppSettings
from launchdeck.deploy_engine.sites import Sites
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, kill_marked
from launchdeck.libs.launcher.release import ManifestError, read_manifest
from launchdeck.libs.launcher.sandbox import Sandbox
from launchdeck.libs.logging import get_logger
from launchdeck.libs.publish import publish_once_by_id

log = get_logger(__name__)

WEB = "web"
DRAIN_POLL_S = 0.05
REPORT_DEADLINE_S = 60.0  # how long a supervision event waits for NATS
NO_WEB_NOTICE = er.Notice(
    404,
    "This app has no web process: it runs workers only, so there is nothing to see here.\n",
)
NOT_RUNNING_NOTICE = er.Notice(
    503, "This app is not running on the platform right now. Redeploy it to start it again.\n"
)


def preview_stopped_notice(max_previews: int) -> er.Notice:
    return er.Notice(
        503,
        f"This preview was stopped: at most {max_previews} preview(s) of a project run at once, "
        "and newer ones were deployed since. Redeploy it to start it again.\n",
    )


class StartFailed(Exception):
    """A new deployment's processes did not become ready: the reason, with their output."""


@dataclass(eq=False)
class Instance:
    record: InstanceRecord
    manifest: ReleaseManifest
    output: AppOutput
    # The deployment's env vars; None: fetched again before the next start (after adoption).
    project_vars: dict[str, str] | None = None
    process: AppProcess | None = None
    crashes: collections.deque[float] = field(default_factory=collections.deque)
    unhealthy: bool = False
    restarts: int = 0
    last_exit: str | None = None
    ready: bool = False  # served (web) or stayed up (worker) since its last start
    stopping: bool = False
    task: asyncio.Task[None] | None = None  # its supervisor
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def crash_count(self, window_s: float) -> int:
        cutoff = time.monotonic() - window_s
        while self.crashes and self.crashes[0] < cutoff:
            self.crashes.popleft()
        return len(self.crashes)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def describe(self) -> dict[str, Any]:
        record = self.record
        return {
            "process": record.process,
            "deployment_id": record.deployment_id,
            "build_id": record.build_id,
            "status": record.status,
            "running": self.running,
            "ready": self.ready,
            "healthy": self.running and self.ready and not self.unhealthy,
            "pid": record.pid if self.running else None,
            "port": record.port,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            **(
                {
                    "container": record.container,
                    "image": self.manifest.image.id if self.manifest.image else None,
                    "memory_mb": record.memory_mb,
                    "cpus": record.cpus,
                }
                if record.container
                else {}
            ),
        }


class Fleet:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        store: InstanceStore,
        releases: ReleaseStore,
        sites: Sites,
        admin: CaddyAdmin,
        settings: AppSettings,
        logs: AppLogs,
        env_source: EnvSource,
        session: aiohttp.ClientSession,
        sandbox: Sandbox,
        private: Iterable[Path],
        site_url: Callable[[str], str],
    ) -> None:
        self.js = js
        self.store = store
        self.releases = releases
        self.sites = sites
        self.admin = admin
        self.settings = settings
        self.logs = logs
        self.env_source = env_source
        self.session = session
        self.sandbox = sandbox
        self.private = tuple(private)
        self.site_url = site_url
        self.ports = Ports(*settings.port_range)
        engine = settings.container_engine
        self.containers = ContainerEngine(engine) if engine else None
        self.container_limits = Limits(settings.container_memory_mb, settings.container_cpus)
        self.instances: dict[str, Instance] = {}
        self._reported_unhealthy: dict[str, bool] = {}
        self._background: set[asyncio.Task[None]] = set()

    # --- what runs where ---------------------------------------------------------------

    def in_slot(self, project: str, slot: str, *statuses: str) -> list[Instance]:
        wanted = statuses or ("serving",)
        return [
            i
            for i in self.instances.values()
            if i.record.project == project and i.record.slot == slot and i.record.status in wanted
        ]

    def of_project(self, project: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.record.project == project]

    def web_of(self, project: str, slot: str) -> Instance | None:
        for instance in self.in_slot(project, slot):
            if instance.record.port is not None:
                return instance
        return None

    def manifest(self, project: str, build_id: str) -> ReleaseManifest | None:
        """The app release's manifest (a process or container release), or None for a static
        release (or an unreadable one, served as the static files it is)."""
        try:
            manifest = read_manifest(self.releases.release_dir(project, build_id))
        except ManifestError:
            return None
        return manifest if manifest is not None and manifest.kind != "static" else None

    def host_of(self, record: InstanceRecord) -> str:
        if record.slot == PRODUCTION:
            return self.sites.project_host(record.project)
        return self.sites.preview_host(record.project, record.build_id)

    def url_of(self, record: InstanceRecord, manifest: ReleaseManifest) -> str | None:
        """The deployment's URL: None for an app without a web process (nothing to visit)."""
        return self.site_url(self.host_of(record)) if WEB in manifest.processes else None

    # `sites.Targets`: what the routes serve

    def production(self, project: str, build_id: str) -> er.Target:
        manifest = self.manifest(project, build_id)
        if manifest is None:
            return self.sites.static(project)
        return self._app_target(project, PRODUCTION, manifest, NOT_RUNNING_NOTICE)

    def preview(self, project: str, build_id: str) -> er.Target:
        manifest = self.manifest(project, build_id)
        if manifest is None:
            return self.sites.static(project, build_id)
        stopped = preview_stopped_notice(self.settings.max_previews)
        return self._app_target(project, preview_slot(build_id), manifest, stopped)

    def _app_target(
        self, project: str, slot: str, manifest: ReleaseManifest, absent: er.Notice
    ) -> er.Target:
        if WEB not in manifest.processes:
            return NO_WEB_NOTICE if self.in_slot(project, slot) else absent
        web = self.web_of(project, slot)
        if web is None or web.record.port is None:
            return absent
        return er.Upstream(web.record.port)

    def protected_builds(self, project: str) -> set[str]:
        """Releases a process of this engine runs in (pruning never removes them)."""
        return {i.record.build_id for i in self.of_project(project)}

    def report(self, project: str) -> list[dict[str, Any]]:
        """The project's live processes, for `GET /api/health/<project>`."""
        return [
            {"slot": i.record.slot, **i.describe()}
            for i in sorted(self.in_slot(project, PRODUCTION), key=lambda i: i.record.process)
        ]

    # --- starting ------------------------------------------------------------------------

    def new_instance(
        self,
        cmd: DeployRequested,
        *,
        process: str,
        command: str,
        manifest: ReleaseManifest,
        release: Path,
        project_vars: dict[str, str],
    ) -> Instance:
        """A new instance of `cmd`'s deployment (recorded `starting`, not started yet); a web
        process gets its port now."""
        port = self.ports.take() if process == WEB else None
        instance_id = new_instance_id()
        limits = None
        if manifest.kind == "container":
            limits = Limits.of(cmd.resources, self.container_limits)
        record = InstanceRecord(
            id=instance_id,
            project=cmd.project_name,
            project_id=cmd.project_id,
            deployment_id=cmd.deployment_id,
            build_id=cmd.build_id,
            environment=cmd.environment,
            slot=slot_of(cmd.environment, cmd.build_id),
            process=process,
            command=command,
            release=str(release),
            port=port,
            health_path=manifest.health_path,
            commit_sha=cmd.commit_sha,
            container=container_name(instance_id) if limits else None,
            memory_mb=limits.memory_mb if limits else None,
            cpus=limits.cpus if limits else None,
        )
        self.store.create(record)
        instance = Instance(
            record=record,
            manifest=manifest,
            output=self.output_for(record, project_vars.values()),
            project_vars=project_vars,
        )
        self.instances[record.id] = instance
        return instance

    def output_for(self, record: InstanceRecord, secrets_: Iterable[str] | None) -> AppOutput:
        """The instance's output; `secrets_` None: not known yet (an adopted process), lines
        are held until they are (`Fleet.ensure_vars`)."""
        return AppOutput(
            self.logs,
            project_id=record.project_id,
            deployment_id=record.deployment_id,
            process=record.process,
            secrets=secrets_,
        )

    async def ensure_vars(self, instance: Instance) -> dict[str, str]:
        """The deployment's env vars (fetched when not known: after adoption), which also tell
        the instance's output what to mask."""
        if instance.project_vars is None:
            record = instance.record
            instance.project_vars = await self.env_source(
                record.project_id, record.deployment_id, record.environment
            )
            instance.output.set_secrets(instance.project_vars.values())
        return instance.project_vars

    async def spawn(self, instance: Instance) -> None:
        """Start the instance's process (the first time, or again after a crash). Raises
        SpawnFailed, NoFreePort, or what fetching the env vars raises."""
        record = instance.record
        project_vars = await self.ensure_vars(instance)
        moved = False
        restart = instance.process is None and record.pid is not None
        if record.port is not None and restart and not bindable(record.port):
            # Started before: it keeps its port (and route) unless something else took it since.
            self.ports.release(record.port)
            record.port = self.ports.take()
            moved = True
        release = Path(record.release)
        if not await asyncio.to_thread(release.is_dir):
            raise SpawnFailed(f"its release {release} is gone")
        instance.ready = False
        if record.container is not None:
            instance.process = await self._spawn_container(instance, project_vars)
        else:
            instance.process = await self._spawn_process(instance, project_vars)
        record.pid, record.start_time = instance.process.leader, instance.process.start_time
        self.store.save(record)
        log.info(
            "app_started",
            instance=record.id,
            project=record.project,
            deployment_id=record.deployment_id,
            process=record.process,
            pid=record.pid,
            port=record.port,
            container=record.container,
        )
        if moved and record.status == "serving":
            await self.route(instance)

    async def _spawn_process(self, instance: Instance, project_vars: dict[str, str]) -> AppProcess:
        record = instance.record
        directory = self.store.dir(record.id)
        release = Path(record.release)
        env = app_environment(
            record,
            instance.manifest,
            project_vars,
            instance_dir=directory,
            sandboxed=self.sandbox.enabled,
        )
        sandbox = self.sandbox.for_app(rundir=directory, release=release, private=self.private)
        return await AppProcess.spawn(
            directory=directory,
            marker=self.store.marker(record.id),
            command=record.command,
            release=release,
            env=env,
            sandbox=sandbox,
            limits=self.settings.limits,
            sink=instance.output.write,
        )

    async def _spawn_container(
        self, instance: Instance, project_vars: dict[str, str]
    ) -> ContainerProcess:
        """The container app's `run` (container.py): its image loaded first when it is not."""
        record, manifest = instance.record, instance.manifest
        engine = self.containers
        if engine is None:
            raise NoContainerEngine(no_engine_reason(self.settings.container_engine_setting))
        if manifest.image is None:
            raise SpawnFailed("the container release's manifest names no image")
        release = Path(record.release)
        await engine.ensure_image(release, manifest.image)
        directory = self.store.dir(record.id)
        assert record.container is not None
        limits = Limits(
            record.memory_mb or self.container_limits.memory_mb,
            record.cpus or self.container_limits.cpus,
        )
        env_file = directory / ENV_FILE
        inherited = await asyncio.to_thread(
            write_env_file,
            env_file,
            container_environment(manifest, project_vars, platform_vars(record)),
        )
        marker = self.store.marker(record.id)
        if engine.is_docker:
            await engine.remove(record.container)  # docker has no `run --replace`
        argv = engine.run_argv(
            name=record.container,
            image=manifest.image.id,
            port=record.port,
            env_file=env_file,
            inherited=sorted(inherited),
            limits=limits,
            project=record.project,
            marker=marker,
            stop_grace_s=self.settings.stop_grace_s,
        )
        process = await ContainerProcess.spawn(
            directory=directory,
            marker=marker,
            command=argv,
            release=release,
            env={**engine.engine_env(), **inherited},
            sandbox=None,  # the container is the sandbox
            limits=None,  # the container's own limits apply
            sink=instance.output.write,
        )
        process.bind(engine, record.container, env_file, limits.memory_mb)
        return process

    async def wait_ready(self, instance: Instance) -> str | None:
        """None once the instance's new process is ready for traffic; else why it is not."""
        process, record = instance.process, instance.record
        if process is None:
            return "it is not running"
        if record.port is not None:
            result = await check_health(
                self.session,
                process,
                port=record.port,
                path=record.health_path,
                host=self.host_of(record),
                policy=self.settings.health,
            )
            reason = None if result.ok else result.reason
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.exited.wait(), self.settings.worker_start_s)
            reason = None
            if not process.running:
                how = await process.exit_description()
                reason = f"the {record.process} process {how} right after it started"
        instance.ready = reason is None
        if reason is not None:
            instance.last_exit = reason
        elif isinstance(process, ContainerProcess):
            process.forget_env_file()  # read when the container was made
        return reason

    async def start_deployment(self, instances: list[Instance]) -> None:
        """Start new instances (a deployment's processes) and wait until all are ready; on
        failure stop them and raise StartFailed with the reason and their last output."""
        try:
            for instance in instances:
                try:
                    await self.spawn(instance)
                except SpawnFailed as exc:
                    raise StartFailed(str(exc)) from exc
            reasons = await asyncio.gather(*(self.wait_ready(i) for i in instances))
            for instance, reason in zip(instances, reasons, strict=True):
                if reason is not None:
                    if instance.process is not None:
                        await instance.process.kill()
                    raise StartFailed(failure_message(instance, reason))
        except BaseException:
            await self.discard(instances)
            raise

    # --- going live, draining, stopping -----------------------------------------------------

    def commit(self, new: list[Instance], old: list[Instance]) -> None:
        """Record that `new` serve their slot and `old` are replaced (before the route moves:
        a successor engine then routes to `new` and stops `old`)."""
        now = time.time()
        for instance in old:
            instance.stopping = True
            instance.record.status = "draining"
            self.store.save(instance.record)
        for instance in new:
            instance.record.status = "serving"
            instance.record.activated_at = now
            self.store.save(instance.record)

    def uncommit(self, new: list[Instance], old: list[Instance]) -> None:
        """Undo `commit` (the route could not be moved): `old` serve again."""
        for instance in new:
            instance.record.status = "starting"
            self.store.save(instance.record)
        for instance in old:
            instance.stopping = False
            instance.record.status = "serving"
            self.store.save(instance.record)

    def supervise(self, instances: Iterable[Instance]) -> None:
        for instance in instances:
            if instance.task is None or instance.task.done():
                instance.task = asyncio.create_task(
                    supervise(self, instance), name=f"app-{instance.record.id}"
                )

    def retire(self, instances: list[Instance]) -> None:
        """Stop `instances` in the background, gracefully: a web process first gets the time the
        proxy needs to finish the requests it still sends it, then SIGTERM, then SIGKILL."""
        for instance in instances:
            instance.stopping = True
            task = asyncio.create_task(self._drain(instance), name=f"drain-{instance.record.id}")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _drain(self, instance: Instance) -> None:
        record = instance.record
        if record.status != "draining":
            record.status = "draining"
            self.store.save(record)
        await self._stop_supervision(instance)
        grace = self.settings.stop_grace_s
        if record.port is not None and instance.running:
            address = f"127.0.0.1:{record.port}"
            deadline = time.monotonic() + grace
            with contextlib.suppress(Exception):  # Caddy unreachable: go on with the stop
                while time.monotonic() < deadline and instance.running:
                    if await self.admin.upstream_requests(address) == 0:
                        break
                    await asyncio.sleep(DRAIN_POLL_S)
        await self._stop(instance, grace)
        log.info(
            "app_drained",
            instance=record.id,
            project=record.project,
            deployment_id=record.deployment_id,
            process=record.process,
        )

    async def _stop_supervision(self, instance: Instance) -> None:
        instance.stopping = True
        tasks = [t for t in (instance.task, *instance.background) if t is not None]
        tasks = [t for t in tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop(self, instance: Instance, grace_s: float) -> None:
        """Stop the instance's process (and anything with its marker) and forget it."""
        if instance.process is not None:
            await instance.process.stop(grace_s)
        else:
            marker = self.store.marker(instance.record.id)
            await asyncio.to_thread(kill_marked, marker.__eq__, APP_MARKER_VAR)
            if instance.record.container is not None and self.containers is not None:
                await self.containers.remove(instance.record.container)
        instance.output.cut()
        self._forget(instance)

    def _forget(self, instance: Instance) -> None:
        record = instance.record
        self.instances.pop(record.id, None)
        self.store.remove(record.id)
        self.ports.release(record.port)
        if not any(
            i.record.deployment_id == record.deployment_id and i.record.process == record.process
            for i in self.instances.values()
        ):
            self.logs.forget(record.deployment_id, record.process)
        if not any(i.record.deployment_id == record.deployment_id for i in self.instances.values()):
            self._reported_unhealthy.pop(record.deployment_id, None)

    def release_slot(self, project: str, slot: str) -> None:
        """The slot serves something else now (a static release): its processes drain."""
        old = self.in_slot(project, slot)
        if old:
            self.commit([], old)
            self.retire(old)

    async def discard(self, instances: Iterable[Instance]) -> None:
        """Kill candidates that never went live (no grace: nothing was routed to them)."""
        await asyncio.gather(*(self._stop(i, 0.0) for i in list(instances)))

    async def abandon(self, instance: Instance) -> None:
        """A live instance that may not run any more (its deployment is over)."""
        instance.stopping = True
        await self._stop(instance, self.settings.stop_grace_s)

    async def stop_instances(self, instances: Iterable[Instance], grace_s: float) -> None:
        targets = list(instances)
        for instance in targets:
            await self._stop_supervision(instance)
        await asyncio.gather(*(self._stop(i, grace_s) for i in targets))

    async def stop_project(self, project: str) -> int:
        """Stop every process of a deleted project (every slot); how many there were."""
        instances = self.of_project(project)
        await self.stop_instances(instances, self.settings.stop_grace_s)
        return len(instances)

    async def stop_previews_over_limit(self, project: str, keep: str) -> list[str]:
        """Keep at most `max_previews` preview slots of the project running: stop the oldest
        (the `keep` slot, just activated, is not one). Returns the stopped preview builds."""
        slots: dict[str, float] = {}
        for instance in self.of_project(project):
            record = instance.record
            if record.slot != PRODUCTION and record.status == "serving":
                slots[record.slot] = max(slots.get(record.slot, 0.0), record.activated_at or 0.0)
        over = len(slots) - self.settings.max_previews
        if over <= 0:
            return []
        oldest = sorted((slot for slot in slots if slot != keep), key=lambda slot: slots[slot])
        stopped: list[str] = []
        for slot in oldest[:over]:
            instances = self.in_slot(project, slot)
            self.commit([], instances)  # no longer the slot's: its route shows the notice
            self.retire(instances)
            build_id = instances[0].record.build_id
            stopped.append(build_id)
            log.info(
                "preview_app_stopped",
                project=project,
                build_id=build_id,
                limit=self.settings.max_previews,
            )
        return stopped

    async def route(self, instance: Instance) -> None:
        """Point the instance's slot at its current port (after it had to move)."""
        record = instance.record
        if record.slot == PRODUCTION:
            meta = self.releases.read_meta(record.project)
            target = self.production(record.project, record.build_id)
            await self.sites.serve_project(record.project, meta.domains, target)
        else:
            await self.sites.serve_preview(
                record.project, record.build_id, self.preview(record.project, record.build_id)
            )

    # --- health reporting ----------------------------------------------------------------

    async def set_unhealthy(self, instance: Instance, unhealthy: bool) -> None:
        """The instance entered (or left) a crash loop: recorded, and its deployment reported
        if that changes its health."""
        instance.unhealthy = instance.record.unhealthy = unhealthy
        self.store.save(instance.record)
        await self.health_changed(instance)

    async def health_changed(self, instance: Instance) -> None:
        """Report the instance's deployment `unhealthy` (some live process of it keeps
        crashing) or `active` again (all serve), when that changed."""
        record = instance.record
        members = [
            i
            for i in self.instances.values()
            if i.record.deployment_id == record.deployment_id and i.record.status == "serving"
        ]
        unhealthy = any(i.unhealthy for i in members)
        if unhealthy == self._reported_unhealthy.get(record.deployment_id, False):
            return
        self._reported_unhealthy[record.deployment_id] = unhealthy
        status: DeploymentStatus = "unhealthy" if unhealthy else "active"
        error = None
        if unhealthy:
            sick = next(i for i in members if i.unhealthy)
            error = (
                f"the {sick.record.process} process crashed "
                f"{sick.crash_count(self.settings.crash_window_s)} times within "
                f"{self.settings.crash_window_s:g}s (last: {sick.last_exit}); it is being "
                "restarted" + quoted_output(sick.output)
            )
        log.warning(
            "deployment_health_changed",
            deployment_id=record.deployment_id,
            project=record.project,
            status=status,
        )
        await self.publish_status(record, status, error, url=self.url_of(record, instance.manifest))

    async def publish_status(
        self,
        record: InstanceRecord,
        status: DeploymentStatus,
        error: str | None,
        *,
        url: str | None,
    ) -> None:
        event = DeploymentStatusChanged(
            deployment_id=record.deployment_id,
            project_id=record.project_id,
            build_id=record.build_id,
            environment=record.environment,
            status=status,
            url=url,
            error=error,
            at=datetime.now(UTC),
        )
        try:
            await publish_once_by_id(
                self.js,
                deployment_event_subject(record.project_id, record.deployment_id),
                encode(event),
                # Unique: a deployment may go unhealthy and back several times.
                msg_id=f"{record.deployment_id}:{status}:{secrets.token_hex(6)}",
                deadline=time.monotonic() + REPORT_DEADLINE_S,
                what=f"the deployment's {status!r} event",
            )
        except Exception as exc:  # NatsUnavailable, a refusal: the next change reports again
            log.warning("deployment_health_not_reported", status=status, error=str(exc))

    # --- recovery and shutdown ---------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Adopt, restart or stop what the previous engine left (module docstring)."""
        self.store.clean_leftovers()
        counts = {"adopted": 0, "restarting": 0, "stopped": 0, "killed": 0}
        live: set[str] = set()
        for record in self.store.load_all():
            manifest = self.manifest(record.project, record.build_id)
            output = self.output_for(record, None)  # masked once the env vars are known
            process = self._adopt(record, output)
            if manifest is None or record.status == "starting":
                if process is not None:
                    await process.kill()
                    counts["stopped"] += 1
                self.store.remove(record.id)
                continue
            instance = Instance(record=record, manifest=manifest, output=output, process=process)
            instance.ready = process is not None and process.running
            instance.unhealthy = record.unhealthy
            if record.unhealthy:  # the previous engine said so: `active` is reported on recovery
                self._reported_unhealthy[record.deployment_id] = True
            self.instances[record.id] = instance
            if record.port is not None:
                self.ports.hold(record.port)
            if record.status == "draining":
                if process is None:
                    self._forget(instance)
                    continue
                live.add(record.id)
                self.retire([instance])
                counts["stopped"] += 1
                continue
            live.add(record.id)
            if process is not None and process.running:
                counts["adopted"] += 1
                log.info("app_adopted", instance=record.id, project=record.project, pid=record.pid)
            else:
                instance.process = None
                counts["restarting"] += 1
                log.info("app_restarting", instance=record.id, project=record.project)
            self.supervise([instance])

        def stray(marker: str) -> bool:
            # Only this apps directory's: another engine's apps on this machine are not ours.
            instance = self.store.instance_of_marker(marker)
            return instance is not None and instance not in live

        killed = await asyncio.to_thread(kill_marked, stray, APP_MARKER_VAR)
        counts["killed"] = len(killed)
        if self.containers is not None:
            for name, marker in (await self.containers.labelled()).items():
                if stray(marker):
                    await self.containers.remove(name)
                    counts["killed"] += 1
                    log.info("stray_container_removed", container=name)
        for leftover in self.store.leftovers(set(self.instances)):
            self.store.remove(leftover.name)
        log.info("apps_recovered", **counts)
        return counts

    def _adopt(self, record: InstanceRecord, output: AppOutput) -> AppProcess | None:
        """The process (a container app's `run`) a previous engine started, if it still runs."""
        if record.pid is None or record.start_time is None:
            return None
        directory, marker = self.store.dir(record.id), self.store.marker(record.id)
        if record.container is None or self.containers is None:
            return AppProcess.adopt(
                pid=record.pid,
                start_time=record.start_time,
                directory=directory,
                marker=marker,
                sink=output.write,
            )
        process = ContainerProcess.adopt(
            pid=record.pid,
            start_time=record.start_time,
            directory=directory,
            marker=marker,
            sink=output.write,
        )
        if process is not None:
            memory = record.memory_mb or self.container_limits.memory_mb
            process.bind(self.containers, record.container, directory / ENV_FILE, memory)
        return process

    async def close(self) -> None:
        """The engine stops: stop watching, leave every app running for the next engine."""
        tasks = [*self._background]
        for instance in self.instances.values():
            tasks += [t for t in (instance.task, *instance.background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for instance in self.instances.values():
            instance.output.cut()
            if instance.process is not None:
                await instance.process.detach()


def failure_message(instance: Instance, reason: str) -> str:
    """Why a new process failed, with its last output lines (masked)."""
    return f"the {instance.record.process} process did not start: {reason}" + quoted_output(
        instance.output
    )


def quoted_output(output: AppOutput) -> str:
    """`. Its last output:` and the last lines the process printed (masked), for an error."""
    tail = output.tail_text()
    return f". Its last output:\n{tail}" if tail else " (it printed nothing)"
