"""deploy-engine entry point.

Start-up, inside the common skeleton (`libs.service`): NATS (+ JetStream provisioning) → Caddy
(ours, started or reused, or the configured one) → the `launchdeck` server → the apps: this
engine's hold on the apps directory (one engine per state dir), then recovery (what the previous
engine ran is adopted, started again or stopped: `apps.fleet`) → reconcile (every active release
and preview is routed again, apps to their live processes, so a restart serves everything
without a rebuild) → micro registration, health HTTP server and the DEPLOYS consumer. A stop
during start-up cancels it wherever it waits; once running, in-flight deploys are handed back on
SIGTERM. Caddy and the apps are left running (the next engine takes them over); whoever owns the
whole platform's lifetime stops them (`apps.shutdown.stop_apps`, `caddy.stop_caddy`).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import DeployRequested, RunRequested, UndeployRequested
from launchdeck.deploy_engine.apps.activation import AppActivation
from launchdeck.deploy_engine.apps.app_logs import AppLogs
from launchdeck.deploy_engine.apps.env import nats_env_source
from launchdeck.deploy_engine.apps.fleet import Fleet
from launchdeck.deploy_engine.apps.records import InstanceStore
from launchdeck.deploy_engine.apps.report import serve_apps_reports
from launchdeck.deploy_engine.caddy import ensure_caddy, listen_address
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin
from launchdeck.deploy_engine.edge_probe import EdgeProbe
from launchdeck.deploy_engine.handler import DeployHandler
from launchdeck.deploy_engine.health import make_app
from launchdeck.deploy_engine.releases import ReleaseStore
from launchdeck.deploy_engine.runs.handler import CancelCheck, RunHandler, fleet_releases
from launchdeck.deploy_engine.runs.output import Publish
from launchdeck.deploy_engine.settings import Settings
from launchdeck.deploy_engine.sites import Sites, reconcile
from launchdeck.libs.jobs import ConsumerSpec, consume
from launchdeck.libs.launcher.sandbox import Sandbox, SandboxUnavailable, detect_sandbox
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically
from launchdeck.libs.publish import publish_once_by_id
from launchdeck.libs.service import Service, run_service

log = get_logger(__name__)

EDGE_WATCH_INTERVAL_S = 5.0
# One-off runs at once per engine, and how long one of their events or log batches waits
# through a NATS outage before the attempt gives up (and is redelivered).
RUN_CONCURRENCY = 4
RUN_PUBLISH_WINDOW_S = 60.0


def nats_cancel_check(js: JetStreamContext) -> CancelCheck:
    """Whether a run's key is in the `cancellations` bucket (written by the control-api on
    `POST /api/v1/runs/{id}/cancel`); NATS errors are raised (the handler carries on)."""
    buckets: list[KeyValue] = []

    async def cancelled(run_id: str) -> bool:
        if not buckets:
            buckets.append(await js.key_value(s.KV_CANCELLATIONS))
        try:
            await buckets[0].get(run_id)
        except KeyNotFoundError:  # also a deleted or purged key
            return False
        return True

    return cancelled


def nats_publish(js: JetStreamContext, window_s: float) -> Publish:
    """A run's events and log batches, stored once (`Nats-Msg-Id`), through an outage of up to
    `window_s`."""

    async def publish(subject: str, payload: bytes, msg_id: str) -> None:
        deadline = time.monotonic() + window_s
        await publish_once_by_id(js, subject, payload, msg_id=msg_id, deadline=deadline)

    return publish


async def start_edge(settings: Settings) -> CaddyAdmin:
    """Our Caddy (or the configured one) answering, with the `launchdeck` server in place."""
    listen = listen_address(settings.edge_bind, settings.edge_http_port)
    address = settings.caddy_admin or await ensure_caddy(
        settings.state_dir, listen, binary=settings.caddy_bin
    )
    admin = CaddyAdmin(address)
    await admin.wait_ready(15.0)
    if await admin.ensure_server(listen):
        log.info("edge_server_configured", listen=listen)
    return admin


async def app_sandbox(settings: Settings) -> Sandbox:
    """How apps are confined here (`LAUNCHDECK_APP_SANDBOX`), said once at start."""
    try:
        sandbox = await asyncio.to_thread(
            detect_sandbox,
            settings.apps.sandbox,
            settings.apps.sandbox_ro_paths,
            variable="LAUNCHDECK_APP_SANDBOX",
        )
    except SandboxUnavailable as exc:
        raise SystemExit(f"deploy-engine: {exc}") from None
    if sandbox.enabled:
        log.info("app_sandbox", sandbox="bwrap", bwrap=sandbox.bwrap)
    else:
        log.warning(
            "app_sandbox_unavailable",
            sandbox="none",
            reason=sandbox.reason,
            detail=(
                "apps run WITHOUT a sandbox: they can read whatever this engine's user can, "
                "the platform's state included; install bubblewrap (docs/operations.md)"
            ),
        )
    log.info("app_limits", **settings.apps.limits.describe())
    return sandbox


async def watch_edge(settings: Settings, sites: Sites, fleet: Fleet) -> None:
    """If the edge loses its config or (our own) Caddy dies, bring it back and re-route."""
    listen = listen_address(settings.edge_bind, settings.edge_http_port)

    async def check() -> None:
        if not await sites.admin.ping() and settings.caddy_admin is None:
            log.warning("edge_caddy_gone_restarting")
            await ensure_caddy(settings.state_dir, listen, binary=settings.caddy_bin)
        if await sites.admin.ensure_server(listen):
            log.warning("edge_config_lost_reconciling")
            await reconcile(sites, fleet)

    await run_periodically(
        "edge watch", EDGE_WATCH_INTERVAL_S, check, first_delay_s=EDGE_WATCH_INTERVAL_S
    )


async def serve(service: Service[Settings]) -> None:
    settings, js = service.settings, service.js
    store = ReleaseStore(settings.releases_dir)
    store.root.mkdir(parents=True, exist_ok=True)
    store.clean_leftovers()
    sandbox = await app_sandbox(settings)
    instances = InstanceStore(settings.apps_dir)
    if instances.locked_by_other():
        log.warning("apps_dir_locked_waiting", apps_dir=str(instances.root))
    await asyncio.to_thread(instances.lock)  # the previous engine is gone once it is ours
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
    app_logs = AppLogs(js, instances.seq_dir)
    app_logs.start()
    admin: CaddyAdmin | None = None
    fleet: Fleet | None = None
    try:
        admin = await start_edge(settings)
        sites = Sites(admin, store, settings.base_domain)
        fleet = Fleet(
            js=js,
            store=instances,
            releases=store,
            sites=sites,
            admin=admin,
            settings=settings.apps,
            logs=app_logs,
            env_source=nats_env_source(service.nc, wait_s=settings.apps.env_wait_s),
            session=http,
            sandbox=sandbox,
            private=(settings.state_dir, settings.releases_dir),
            site_url=settings.site_url,
        )
        await fleet.recover()
        await reconcile(sites, fleet)
        probe = EdgeProbe(http, settings.edge_probe_host, settings.edge_http_port)
        handler = DeployHandler(
            js,
            store,
            sites,
            probe,
            site_url=settings.site_url,
            limits=settings.limits,
            keep_releases=settings.keep_releases,
            deadline_s=settings.timeout_s,
            requested_within_s=settings.deadline_s,
            apps=AppActivation(fleet, sites, store, probe),
        )
        runs = RunHandler(
            releases=fleet_releases(fleet),
            env_source=nats_env_source(service.nc, wait_s=settings.apps.env_wait_s),
            publish=nats_publish(js, RUN_PUBLISH_WINDOW_S),
            runs_dir=settings.state_dir / "runs",
            sandbox=sandbox,
            limits=settings.apps.limits,
            private=(settings.state_dir, settings.releases_dir),
            cancelled=nats_cancel_check(js),
        )
        await runs.reclaim()
        await service.register(
            "Releases, activation, apps and the Caddy edge",
            lambda: {**handler.status(), **runs.status()},
        )
        await serve_apps_reports(service.nc, fleet)  # ends with the connection
        runner = web.AppRunner(make_app(store, sites, probe, fleet))
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        spec = ConsumerSpec(
            stream=s.STREAM_DEPLOYS,
            durable=s.CONSUMER_DEPLOY_ENGINES,
            subject=s.SUBJECT_DEPLOY_JOBS,
            message_type=DeployRequested,
            stall_timeout_s=settings.timeout_s,  # progress: each stored status event
        )
        undeploy_spec = ConsumerSpec(
            stream=s.STREAM_DEPLOYS,
            durable=s.CONSUMER_UNDEPLOY_ENGINES,
            subject=s.SUBJECT_UNDEPLOY_JOBS,
            message_type=UndeployRequested,
        )
        run_spec = ConsumerSpec(
            stream=s.STREAM_DEPLOYS,
            durable=s.CONSUMER_RUN_ENGINES,
            subject=s.SUBJECT_RUN_JOBS,
            message_type=RunRequested,
        )
        log.info(
            "deploy_engine_ready",
            edge=settings.site_url(f"*.{settings.base_domain}"),
            caddy_admin=admin.address,
            health_port=settings.port,
        )
        try:
            await service.run_until_stopped(
                asyncio.create_task(
                    consume(js, spec, handler.handle_deploy, concurrency=settings.concurrency),
                    name="deploy-jobs",
                ),
                asyncio.create_task(
                    consume(js, undeploy_spec, handler.handle_undeploy), name="undeploy-jobs"
                ),
                asyncio.create_task(
                    consume(js, run_spec, runs.handle_run, concurrency=RUN_CONCURRENCY),
                    name="run-jobs",
                ),
                asyncio.create_task(watch_edge(settings, sites, fleet), name="edge-watch"),
            )
        finally:
            await service.close_micro()
            await runner.cleanup()
    finally:
        if fleet is not None:
            await fleet.close()  # the apps keep running: the next engine adopts them
        await app_logs.close()
        instances.unlock()
        await http.close()
        if admin is not None:
            await admin.close()


def main() -> None:
    run_service(s.SERVICE_DEPLOY_ENGINE, Settings.from_env, serve)


if __name__ == "__main__":
    main()
