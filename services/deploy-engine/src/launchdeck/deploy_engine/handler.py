"""Handling one DeployRequested: make a build's release the one an environment serves (and one
UndeployRequested: a deleted project stops being served and its releases go).

activating → (fetch artifact → verify sha256 → extract, unless the release is already on disk,
which is how a rollback works) → a static release: production: swap `current` and make sure the
project's route exists; preview: add the preview's routes; a process release (its manifest says
so): start its processes beside the old ones and move the route once they are ready
(`apps.activation`) → check through the edge that it answers → active with its URL. Any
failure leaves the previous release serving and reports `failed` with a readable reason. Old
releases are pruned afterwards (never one an app process runs in). A command requested longer
ago than the deploy deadline (`requested_within_s`) is failed without activating anything: the
control-api fails a deployment left pending that long, and a command that reaches the engine
only then (it was down, its queue was backed up) must not switch the site behind that record's
back.

Status events wait through a NATS outage (`libs.publish`) until the attempt's deadline
(`deadline_s` after it started), then the attempt fails and is redelivered; each stored event is
the attempt's progress for the watchdog of `libs.jobs`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import BadObjectMetaError, DigestMismatchError, ObjectNotFoundError

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import (
    DeploymentStatusChanged,
    DeployRequested,
    UndeployRequested,
)
from launchdeck.contracts.statuses import DeploymentStatus
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS, deployment_event_subject
from launchdeck.deploy_engine.apps.activation import AppActivation
from launchdeck.deploy_engine.apps.container import images_in, release_image
from launchdeck.deploy_engine.apps.records import PRODUCTION
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.errors import DeployFailed
from launchdeck.deploy_engine.extract import Limits, ReleaseArchiveError, extract_release
from launchdeck.deploy_engine.releases import (
    InvalidName,
    ReleaseStore,
    check_build_id,
    check_project_name,
)
from launchdeck.deploy_engine.sites import Sites
from launchdeck.libs.jobs import Delivery, Outcome
from launchdeck.libs.launcher.release import ManifestError, read_manifest
from launchdeck.libs.logging import bind_ids, get_logger
from launchdeck.libs.objects import download
from launchdeck.libs.publish import publish_once_by_id

log = get_logger(__name__)

# index.html up to this size is compared byte for byte with what the edge serves.
MAX_COMPARED_INDEX = 4 * 1024 * 1024
# A `failed` report made after the attempt's deadline passed still waits this long for NATS.
LAST_REPORT_S = 30.0


class _Attempt:
    """One delivery of a deploy command: until when its events wait for NATS."""

    def __init__(self, delivery: Delivery, deadline: float) -> None:
        self.delivery = delivery
        self.deadline = deadline  # time.monotonic()


class DeployHandler:
    def __init__(
        self,
        js: JetStreamContext,
        store: ReleaseStore,
        sites: Sites,
        probe: EdgeProbe,
        *,
        site_url: Callable[[str], str],
        limits: Limits | None = None,
        keep_releases: int = 10,
        verify_timeout_s: float = 5.0,
        deadline_s: float = 600.0,
        requested_within_s: float | None = None,
        apps: AppActivation | None = None,
    ) -> None:
        self.js = js
        self.apps = apps  # None: this engine serves static releases only
        self.store = store
        self.sites = sites
        self.probe = probe
        self.site_url = site_url
        self.limits = limits or Limits()
        self.keep_releases = keep_releases
        self.verify_timeout_s = verify_timeout_s
        self.deadline_s = deadline_s  # one attempt's time to get its events through NATS
        self.requested_within_s = requested_within_s  # the deploy deadline (None: none)
        self._locks: dict[str, asyncio.Lock] = {}
        self.in_flight = 0
        self.activated = 0
        self.failed = 0

    def status(self) -> dict[str, object]:
        status: dict[str, object] = {
            "in_flight": self.in_flight,
            "activated": self.activated,
            "failed": self.failed,
        }
        if self.apps is not None:  # `nats micro info`: how many app processes run here
            fleet = self.apps.fleet
            status["app_processes"] = sum(1 for i in fleet.instances.values() if i.running)
            status["apps_unhealthy"] = sum(1 for i in fleet.instances.values() if i.unhealthy)
        return status

    async def handle_deploy(self, cmd: DeployRequested, delivery: Delivery) -> Outcome:
        bind_ids(deployment_id=cmd.deployment_id, project_id=cmd.project_id, build_id=cmd.build_id)
        self.in_flight += 1
        try:
            return await self._handle(cmd, delivery)
        finally:
            self.in_flight -= 1

    async def _handle(self, cmd: DeployRequested, delivery: Delivery) -> Outcome:
        started = time.monotonic()
        attempt = _Attempt(delivery, started + self.deadline_s)
        late = self._past_deadline(cmd)
        if late is not None:
            await self._fail(cmd, attempt, late)
            return Outcome.ACK
        await self._publish(cmd, attempt, "activating")
        try:
            check_project_name(cmd.project_name)
            check_build_id(cmd.build_id)
            lock = self._locks.setdefault(cmd.project_name, asyncio.Lock())
            async with lock:
                if self.store.is_removed(cmd.project_id):
                    raise DeployFailed("the project was deleted")
                url = await self._activate(cmd, delivery)
                await self._publish(cmd, attempt, "active", url=url)
                self.activated += 1
                log.info(
                    "deployment_active",
                    url=url,
                    environment=cmd.environment,
                    took_ms=round((time.monotonic() - started) * 1000),
                )
                await self._prune(cmd.project_name, cmd.build_id)
        except (DeployFailed, InvalidName) as exc:
            await self._fail(cmd, attempt, str(exc))
        except Exception as exc:
            if not delivery.last_attempt:
                log.warning("deploy_retry", error=str(exc), attempt=delivery.num_delivered)
                return Outcome.RETRY
            log.exception("deploy_crashed")
            await self._fail(cmd, attempt, f"internal error: {exc}")
        return Outcome.ACK

    async def handle_undeploy(self, cmd: UndeployRequested, delivery: Delivery) -> Outcome:
        bind_ids(project_id=cmd.project_id)
        try:
            check_project_name(cmd.project_name)
            lock = self._locks.setdefault(cmd.project_name, asyncio.Lock())
            async with lock:
                # First: a deploy command of the deleted project arriving later is refused.
                self.store.mark_removed(cmd.project_id)
                owner = self.store.read_meta(cmd.project_name).project_id
                if owner not in (None, cmd.project_id):
                    log.info("undeploy_skipped_name_reused", project=cmd.project_name)
                    return Outcome.ACK
                # Routes first: nobody is sent to a process being stopped (a 404, not a 502).
                await self.sites.stop_serving(cmd.project_name)
                stopped = await self.apps.fleet.stop_project(cmd.project_name) if self.apps else 0
                if stopped:
                    log.info("project_apps_stopped", project=cmd.project_name, processes=stopped)
                images = await asyncio.to_thread(self._images_of, cmd.project_name)
                removed = await asyncio.to_thread(self.store.remove_project, cmd.project_name)
                await self._remove_images(set(images.values()))
        except InvalidName as exc:
            log.error("undeploy_refused", error=str(exc))
            return Outcome.TERM
        except Exception as exc:
            if not delivery.last_attempt:
                log.warning("undeploy_retry", error=str(exc), attempt=delivery.num_delivered)
                return Outcome.RETRY
            log.exception("undeploy_crashed")
            return Outcome.TERM
        log.info("project_undeployed", project=cmd.project_name, releases_removed=removed)
        return Outcome.ACK

    def _past_deadline(self, cmd: DeployRequested) -> str | None:
        """Why the command is too old to carry out (module docstring), or None."""
        if self.requested_within_s is None or cmd.requested_at is None:
            return None
        age_s = (datetime.now(UTC) - cmd.requested_at).total_seconds()
        if age_s <= self.requested_within_s:
            return None
        return (
            f"the deploy command arrived {age_s:.0f}s after it was requested, past the deploy "
            f"deadline of {self.requested_within_s:.0f}s: nothing was activated"
        )

    async def _fail(self, cmd: DeployRequested, attempt: _Attempt, reason: str) -> None:
        self.failed += 1
        log.warning("deployment_failed", error=reason)
        # Also after the deadline (the failure may be NATS itself): one more moment to say so.
        attempt.deadline = max(attempt.deadline, time.monotonic() + LAST_REPORT_S)
        await self._publish(cmd, attempt, "failed", error=reason)

    async def _publish(
        self,
        cmd: DeployRequested,
        attempt: _Attempt,
        status: DeploymentStatus,
        *,
        url: str | None = None,
        error: str | None = None,
    ) -> None:
        event = DeploymentStatusChanged(
            deployment_id=cmd.deployment_id,
            project_id=cmd.project_id,
            build_id=cmd.build_id,
            environment=cmd.environment,
            status=status,
            url=url,
            error=error,
            at=datetime.now(UTC),
        )
        await publish_once_by_id(
            self.js,
            deployment_event_subject(cmd.project_id, cmd.deployment_id),
            encode(event),
            msg_id=f"{cmd.deployment_id}:{status}",
            deadline=attempt.deadline,
            what=f"the deployment's {status!r} event",
        )
        attempt.delivery.progress()

    async def _activate(self, cmd: DeployRequested, delivery: Delivery) -> str | None:
        project, build_id = cmd.project_name, cmd.build_id
        meta = self.store.read_meta(project)
        if meta.project_id != cmd.project_id:
            meta.project_id = cmd.project_id
            self.store.write_meta(project, meta)
        release = self.store.release_dir(project, build_id)
        if not release.is_dir():
            await self._fetch_release(cmd, release)
        try:
            manifest = read_manifest(release)
        except ManifestError as exc:
            raise DeployFailed(str(exc)) from exc
        if manifest is not None and manifest.kind in ("process", "container"):
            if self.apps is None:
                raise DeployFailed("this deploy-engine does not run apps (a static site only)")
            # Its own limits bound each wait (env vars, release command, health checks).
            with delivery.working():
                return await self.apps.activate(cmd, release, manifest)
        if cmd.artifact.kind == "process":
            raise DeployFailed(
                "the artifact is a process release but carries no manifest "
                "(.launchdeck/release.json): rebuild it"
            )
        if cmd.environment == "preview":
            return await self._activate_preview(project, build_id)
        url = await self._activate_production(project, build_id, list(cmd.domains), release)
        if self.apps is not None:  # an app replaced by a static site: its processes drain
            self.apps.fleet.release_slot(project, PRODUCTION)
        return url

    async def _activate_production(
        self, project: str, build_id: str, domains: list[str], release: Path
    ) -> str:
        meta = self.store.read_meta(project)
        if meta.domains != domains:
            meta.domains = domains
            self.store.write_meta(project, meta)
        previous = self.store.activate(project, build_id)
        host = self.sites.project_host(project)
        try:
            await self.sites.serve_project(project, domains)
            result = await self.probe.check(
                host, project, expect_body=_index_bytes(release), timeout_s=self.verify_timeout_s
            )
            if not result.ok:
                raise DeployFailed(f"the edge does not serve the new release: {result.reason}")
        except BaseException:
            self._restore(project, previous)
            raise
        return self.site_url(host)

    def _restore(self, project: str, previous: str | None) -> None:
        """Put the previous release back after a failed activation."""
        if previous is not None:
            self.store.activate(project, previous)
        else:
            self.store.current_link(project).unlink(missing_ok=True)
        log.info("previous_release_restored", previous=previous)

    async def _activate_preview(self, project: str, build_id: str) -> str:
        meta = self.store.read_meta(project)
        if build_id not in meta.previews:
            meta.previews.append(build_id)
            self.store.write_meta(project, meta)
        host = self.sites.preview_host(project, build_id)
        await self.sites.serve_preview(project, build_id)
        result = await self.probe.check(
            host, project, build_id=build_id, timeout_s=self.verify_timeout_s
        )
        if not result.ok:
            await self.sites.drop_preview(project, build_id)
            meta.previews.remove(build_id)
            self.store.write_meta(project, meta)
            raise DeployFailed(f"the edge does not serve the preview: {result.reason}")
        return self.site_url(host)

    async def _fetch_release(self, cmd: DeployRequested, release: Path) -> None:
        key = cmd.artifact.key
        release.parent.mkdir(parents=True, exist_ok=True)
        incoming = release.parent / f".incoming-{cmd.build_id}-{secrets.token_hex(4)}.tar.gz"
        try:
            try:
                with incoming.open("wb") as out:
                    await download(self.js, OBJECT_STORE_ARTIFACTS, key, out)
            except ObjectNotFoundError as exc:
                raise DeployFailed(f"artifact {key!r} not found in the object store") from exc
            except (DigestMismatchError, BadObjectMetaError) as exc:
                raise DeployFailed(f"artifact {key!r} is corrupt in the object store") from exc
            try:
                stats = await asyncio.to_thread(
                    extract_release,
                    incoming,
                    release,
                    sha256=cmd.artifact.sha256,
                    limits=self.limits,
                )
            except ReleaseArchiveError as exc:
                raise DeployFailed(str(exc)) from exc
        finally:
            incoming.unlink(missing_ok=True)
        log.info("release_extracted", files=stats.files, bytes=stats.bytes, path=str(release))

    async def _prune(self, project: str, keep_build: str) -> None:
        try:
            # Never a release a process of this engine runs in (a draining one included).
            running = self.apps.fleet.protected_builds(project) if self.apps else set()
            images = await asyncio.to_thread(self._images_of, project)
            removed = await asyncio.to_thread(
                self.store.prune, project, self.keep_releases, (keep_build, *sorted(running))
            )
            if not removed:
                return
            await self._remove_images({images[b] for b in removed if b in images})
            meta = self.store.read_meta(project)
            for build_id in removed:
                if build_id in meta.previews:
                    await self.sites.drop_preview(project, build_id)
                    meta.previews.remove(build_id)
            self.store.write_meta(project, meta)
            log.info("releases_pruned", removed=removed)
        except Exception:
            # Disk hygiene only: the deployment itself succeeded.
            log.exception("prune_failed")

    def _images_of(self, project: str) -> dict[str, str]:
        """Build id → image id of the project's container releases on disk."""
        found: dict[str, str] = {}
        for release in self.store.list_releases(project):
            image = release_image(release.path)
            if image is not None:
                found[release.build_id] = image
        return found

    async def _remove_images(self, candidates: set[str]) -> None:
        """Remove the images of removed container releases that no release on disk (of any
        project) still runs."""
        engine = self.apps.fleet.containers if self.apps else None
        if engine is None or not candidates:
            return
        kept = await asyncio.to_thread(
            lambda: images_in(
                r.path for p in self.store.projects() for r in self.store.list_releases(p)
            )
        )
        for image in sorted(candidates - kept):
            if await engine.remove_image(image):
                log.info("container_image_removed", image=image)


def _index_bytes(release: Path) -> bytes | None:
    index = release / "index.html"
    try:
        if index.is_file() and index.stat().st_size <= MAX_COMPARED_INDEX:
            return index.read_bytes()
    except OSError:
        return None
    return None
