"""Activating a process release: zero downtime, and nothing half applied.

For a deployment of an app (production, or one preview build):

1. its env vars for its target (`production` or `preview`) from the control-api;
2. the release command (`release_command` of the manifest, e.g. migrations), once, in the new
   release, with those vars; it must exit 0 (within `LAUNCHDECK_RELEASE_COMMAND_TIMEOUT_S`);
3. every process type of the release starts — beside the old ones, which keep serving — and must
   become ready: the web process passes its health check on its own port (health_check.py), a
   worker stays up for `LAUNCHDECK_WORKER_START_S`;
4. the new instances are recorded live and the old ones replaced (records.py), then the slot's
   route moves: the Caddy route (one per project, or the preview's two, replaced by `@id`) now
   proxies to the new web process, and a request through the edge must reach it;
5. the new instances are supervised (restarted when they crash); the old ones drain in the
   background — the proxy finishes what it still sends them, then SIGTERM, a grace period,
   SIGKILL (fleet.py);
6. a preview: at most `LAUNCHDECK_MAX_PREVIEW_APPS` preview slots of the project run; the oldest
   others stop, and their routes answer a page saying the preview was stopped.

A failure at any step up to 4 stops whatever this deployment started and leaves the previous
release serving exactly as before (its processes were never touched; a route already moved is
put back), and the deployment fails with the reason and the app's last output lines. Rollback
and promotion are activations of a release already on disk: its processes start again, with
the target's current env vars, without a rebuild.

A container release (container.py) goes the same way with one process, `web`, its container
(the image loaded from the release the first time), and no release command.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from launchdeck.contracts.messages import DeployRequested, ReleaseManifest
from launchdeck.deploy_engine import edge_routes as er
from launchdeck.deploy_engine.apps.container import no_engine_reason
from launchdeck.deploy_engine.apps.fleet import (
    NO_WEB_NOTICE,
    WEB,
    Fleet,
    Instance,
    StartFailed,
    quoted_output,
)
from launchdeck.deploy_engine.apps.ports import NoFreePort
from launchdeck.deploy_engine.apps.process import SpawnFailed
from launchdeck.deploy_engine.apps.records import PRODUCTION, slot_of
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.errors import DeployFailed
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.sites import Sites
from launchdeck.libs.env_client import EnvRefused
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

RELEASE = "release"  # the release command's name in the app log


class AppActivation:
    def __init__(
        self,
        fleet: Fleet,
        sites: Sites,
        store: ReleaseStore,
        probe: EdgeProbe,
        *,
        verify_timeout_s: float = 5.0,
    ) -> None:
        self.fleet = fleet
        self.sites = sites
        self.store = store
        self.probe = probe
        self.verify_timeout_s = verify_timeout_s

    async def activate(
        self, cmd: DeployRequested, release: Path, manifest: ReleaseManifest
    ) -> str | None:
        """Make `cmd`'s release the one its slot serves (module docstring); its URL, or None for
        an app without a web process. Raises DeployFailed (or, when the control-api does not
        answer, EnvUnavailable: the attempt is retried)."""
        if not manifest.processes:
            raise DeployFailed("the release's manifest names no process to run")
        if manifest.kind == "container":
            if self.fleet.containers is None:
                raise DeployFailed(no_engine_reason(self.fleet.settings.container_engine_setting))
            if manifest.image is None:
                raise DeployFailed("the container release's manifest names no image")
        took: dict[str, float] = {}  # where the time went, for the log
        lap = time.monotonic()
        try:
            project_vars = await self.fleet.env_source(
                cmd.project_id, cmd.deployment_id, cmd.environment
            )
        except EnvRefused as exc:
            raise DeployFailed(str(exc)) from exc
        took["env_ms"], lap = _ms(lap), time.monotonic()
        if manifest.release_command and manifest.kind == "process":
            await self._release_command(cmd, release, manifest, project_vars)
            took["release_command_ms"], lap = _ms(lap), time.monotonic()
        slot = slot_of(cmd.environment, cmd.build_id)
        try:
            new = [
                self._instance(cmd, process, command, manifest, release, project_vars)
                for process, command in sorted(manifest.processes.items())
                if manifest.kind == "process" or process == WEB  # a container: one process
            ]
        except NoFreePort as exc:
            raise DeployFailed(str(exc)) from exc
        try:
            await self.fleet.start_deployment(new)
        except StartFailed as exc:
            raise DeployFailed(str(exc)) from exc
        took["start_ms"], lap = _ms(lap), time.monotonic()
        if slot == PRODUCTION:
            url = await self._switch_production(cmd, manifest, new)
        else:
            url = await self._switch_preview(cmd, manifest, new)
        took["switch_ms"] = _ms(lap)
        log.info("app_activated", slot=slot, processes=len(new), **took)
        return url

    def _instance(
        self,
        cmd: DeployRequested,
        process: str,
        command: str,
        manifest: ReleaseManifest,
        release: Path,
        project_vars: dict[str, str],
    ) -> Instance:
        return self.fleet.new_instance(
            cmd,
            process=process,
            command=command,
            manifest=manifest,
            release=release,
            project_vars=project_vars,
        )

    async def _release_command(
        self,
        cmd: DeployRequested,
        release: Path,
        manifest: ReleaseManifest,
        project_vars: dict[str, str],
    ) -> None:
        """Run the release command to its end; DeployFailed unless it exits 0."""
        assert manifest.release_command is not None
        command = manifest.release_command
        timeout_s = self.fleet.settings.release_command_timeout_s
        instance = self._instance(cmd, RELEASE, command, manifest, release, project_vars)
        instance.output.system(f"▶ Running the release command: {command}")
        try:
            try:
                await self.fleet.spawn(instance)
            except SpawnFailed as exc:
                raise DeployFailed(f"the release command could not be started: {exc}") from exc
            process = instance.process
            assert process is not None
            try:
                await asyncio.wait_for(process.exited.wait(), timeout_s)
            except TimeoutError:
                await process.kill()
                raise DeployFailed(
                    f"the release command `{command}` did not finish within {timeout_s:g}s "
                    "and was stopped" + quoted_output(instance.output)
                ) from None
            code = await process.exit_code()
            await process.output_done()
            if code != 0:
                how = await process.exit_description()
                raise DeployFailed(
                    f"the release command `{command}` {how}" + quoted_output(instance.output)
                )
            instance.output.system("✔ The release command succeeded")
            log.info("release_command_succeeded", deployment_id=cmd.deployment_id)
        finally:
            await self.fleet.discard([instance])

    async def _switch_production(
        self, cmd: DeployRequested, manifest: ReleaseManifest, new: list[Instance]
    ) -> str | None:
        project, domains = cmd.project_name, list(cmd.domains)
        meta = self.store.read_meta(project)
        if meta.domains != domains:
            meta.domains = domains
            self.store.write_meta(project, meta)
        old = self.fleet.in_slot(project, PRODUCTION)
        previous_build = self.store.active_build(project)
        previous: er.Target | None = (
            self.fleet.production(project, previous_build) if previous_build else None
        )
        self.fleet.commit(new, old)
        self.store.activate(project, cmd.build_id)
        host = self.sites.project_host(project)
        try:
            await self.sites.serve_project(project, domains, _target(new))
            await self._verify(host, project, new, build_id=None)
        except BaseException:
            self.fleet.uncommit(new, old)
            if previous_build is not None:
                self.store.activate(project, previous_build)
            else:
                self.store.current_link(project).unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                if previous is not None:
                    await self.sites.serve_project(project, domains, previous)
                else:
                    await self.sites.admin.delete_route(er.project_route_id(project))
            await self.fleet.discard(new)
            raise
        self.fleet.supervise(new)
        self.fleet.retire(old)
        return self.fleet.url_of(new[0].record, manifest)

    async def _switch_preview(
        self, cmd: DeployRequested, manifest: ReleaseManifest, new: list[Instance]
    ) -> str | None:
        project, build_id = cmd.project_name, cmd.build_id
        slot = new[0].record.slot
        old = self.fleet.in_slot(project, slot)  # this preview deployed again
        meta = self.store.read_meta(project)
        # Deployed before: what its routes serve now (its process, or the stopped page) is put
        # back if this fails.
        previous = self.fleet.preview(project, build_id) if build_id in meta.previews else None
        if build_id not in meta.previews:
            meta.previews.append(build_id)
            self.store.write_meta(project, meta)
        self.fleet.commit(new, old)
        host = self.sites.preview_host(project, build_id)
        try:
            await self.sites.serve_preview(project, build_id, _target(new))
            await self._verify(host, project, new, build_id=build_id)
        except BaseException:
            self.fleet.uncommit(new, old)
            with contextlib.suppress(Exception):
                if previous is not None:
                    await self.sites.serve_preview(project, build_id, previous)
                else:
                    await self.sites.drop_preview(project, build_id)
                    meta.previews.remove(build_id)
                    self.store.write_meta(project, meta)
            await self.fleet.discard(new)
            raise
        self.fleet.supervise(new)
        self.fleet.retire(old)
        for stopped in await self.fleet.stop_previews_over_limit(project, keep=slot):
            await self.sites.serve_preview(project, stopped, self.fleet.preview(project, stopped))
        return self.fleet.url_of(new[0].record, manifest)

    async def _verify(
        self, host: str, project: str, new: list[Instance], *, build_id: str | None
    ) -> None:
        """A request through the edge reaches the new web process (Caddy took the route)."""
        web = next((i for i in new if i.record.process == WEB), None)
        if web is None:
            return
        result = await self.probe.check(
            host,
            project,
            build_id=build_id,
            timeout_s=self.verify_timeout_s,
            path=web.record.health_path,
        )
        if not result.ok:
            raise DeployFailed(f"the edge does not serve the new release: {result.reason}")


def _target(new: list[Instance]) -> er.Target:
    for instance in new:
        if instance.record.process == WEB and instance.record.port is not None:
            return er.Upstream(instance.record.port)
    return NO_WEB_NOTICE


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000, 1)
