"""What the edge serves for each project, kept in step with the release store.

Production: the project's hosts serve `releases/<project>/current` for a static site, so
activating another build is a symlink swap and the route itself only changes when the hosts do;
for an app, the port of its live web process, so activation moves the route's upstream. Previews:
each preview build gets its own host, and a path route on the project's own host, serving that
release directory directly or proxying to the preview's own process (which hosts may be whose:
`edge_routes`). What a route serves is its `Target`; `Targets` says which one a project or
preview has (static releases by default; the running apps', `apps.fleet.Fleet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from launchdeck.deploy_engine import edge_routes as er
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    projects: int
    previews: int


class Targets(Protocol):
    """What the routes of a project's production and of its previews serve."""

    def production(self, project: str, build_id: str) -> er.Target: ...

    def preview(self, project: str, build_id: str) -> er.Target: ...


class Sites:
    def __init__(self, admin: CaddyAdmin, store: ReleaseStore, base_domain: str) -> None:
        self.admin = admin
        self.store = store
        self.base_domain = base_domain

    def project_host(self, project: str) -> str:
        return f"{project}.{self.base_domain}"

    def preview_host(self, project: str, build_id: str) -> str:
        return er.preview_host(project, build_id, self.base_domain)

    def static(self, project: str, build_id: str | None = None) -> er.Static:
        """A static release: production serves `current`, a preview its release directory."""
        if build_id is None:
            return er.Static(self.store.current_link(project))
        return er.Static(self.store.release_dir(project, build_id))

    async def serve_project(
        self, project: str, domains: list[str], target: er.Target | None = None
    ) -> None:
        """Route the project's hosts to `target` (default: its static `current` release)."""
        hosts = er.project_hosts(project, self.base_domain, domains)
        listed = {d.strip().lower().rstrip(".") for d in domains} - {""}
        if dropped := sorted(listed - set(hosts)):
            log.warning("platform_hosts_not_routed", project=project, hosts=dropped)
        route = er.project_route(project, hosts, target or self.static(project))
        await self.admin.upsert_route(route)

    async def serve_preview(
        self, project: str, build_id: str, target: er.Target | None = None
    ) -> None:
        """Route the preview's host and path to `target` (default: its static release)."""
        target = target or self.static(project, build_id)
        host = self.preview_host(project, build_id)
        await self.admin.upsert_route(er.preview_host_route(project, build_id, host, target))
        path_route = er.preview_path_route(project, build_id, self.project_host(project), target)
        await self.admin.upsert_route(path_route, first=True)

    async def drop_preview(self, project: str, build_id: str) -> None:
        await self.admin.delete_route(er.preview_host_route_id(project, build_id))
        await self.admin.delete_route(er.preview_path_route_id(project, build_id))

    async def stop_serving(self, project: str) -> None:
        """Remove the project's routes: its hosts and every preview."""
        await self.admin.delete_route(er.project_route_id(project))
        for build_id in self.store.read_meta(project).previews:
            await self.drop_preview(project, build_id)


class StaticTargets:
    """Every release served as a static site (no apps running)."""

    def __init__(self, sites: Sites) -> None:
        self.sites = sites

    def production(self, project: str, build_id: str) -> er.Target:
        return self.sites.static(project)

    def preview(self, project: str, build_id: str) -> er.Target:
        return self.sites.static(project, build_id)


async def reconcile(sites: Sites, targets: Targets | None = None) -> ReconcileReport:
    """Give every project with an active release (and every kept preview) its routes again,
    serving what `targets` says (default: static releases).

    Idempotent: run at every start, so a restarted engine, or a Caddy that lost its config,
    serves everything again without a rebuild.
    """
    store = sites.store
    targets = targets or StaticTargets(sites)
    projects = previews = 0
    for project in store.projects():
        meta = store.read_meta(project)
        active = store.active_build(project)
        if active is not None:
            await sites.serve_project(project, meta.domains, targets.production(project, active))
            projects += 1
        kept = [b for b in meta.previews if store.has_release(project, b)]
        for build_id in kept:
            await sites.serve_preview(project, build_id, targets.preview(project, build_id))
            previews += 1
        if kept != meta.previews:
            meta.previews = kept
            store.write_meta(project, meta)
    log.info("edge_reconciled", projects=projects, previews=previews)
    return ReconcileReport(projects=projects, previews=previews)
