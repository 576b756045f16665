"""The aiohttp application: routes, middlewares and background tasks, over given resources.

`create_app` takes its resources (pool, NATS) rather than opening them, so `main` owns their
lifetime and tests can run the very same application in-process against their own servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from launchdeck.control_api.api.apps import setup_app_routes
from launchdeck.control_api.api.audit import audit_middleware, setup_audit_routes
from launchdeck.control_api.api.auth import auth_middleware, setup_token_checks
from launchdeck.control_api.api.builds import setup_build_routes
from launchdeck.control_api.api.deployments import setup_deployment_routes
from launchdeck.control_api.api.env import setup_env_routes
from launchdeck.control_api.api.generation_charts import setup_generation_chart_routes
from launchdeck.control_api.api.generation_results import setup_generation_result_routes
from launchdeck.control_api.api.generations import setup_generation_routes
from launchdeck.control_api.api.hooks import setup_hook_routes
from launchdeck.control_api.api.json_io import MAX_BODY_BYTES
from launchdeck.control_api.api.keys import JS, KEYRING, METRICS, NC, POOL, SETTINGS
from launchdeck.control_api.api.logs import setup_log_routes
from launchdeck.control_api.api.observe import observe_middleware
from launchdeck.control_api.api.openapi import setup_openapi_routes
from launchdeck.control_api.api.page_cache import (
    BUILD_PAGES,
    page_cache_middleware,
    setup_page_cache,
)
from launchdeck.control_api.api.problems import problems_middleware
from launchdeck.control_api.api.projects import setup_project_routes
from launchdeck.control_api.api.runs import setup_run_routes
from launchdeck.control_api.api.schedules import setup_schedule_routes
from launchdeck.control_api.api.system import setup_system_routes
from launchdeck.control_api.api.templates import setup_template_routes
from launchdeck.control_api.api.tokens import setup_token_routes
from launchdeck.control_api.consumers.advisories import MaxDeliveriesWatcher
from launchdeck.control_api.consumers.env_requests import EnvRequestServer
from launchdeck.control_api.consumers.events import EventsConsumer
from launchdeck.control_api.consumers.generation_rpc import GenerationRpcServer
from launchdeck.control_api.consumers.scheduler import Scheduler
from launchdeck.control_api.consumers.stuck_jobs import StuckJobsSweeper
from launchdeck.control_api.dashboard.routes import setup_dashboard_routes
from launchdeck.control_api.domain.abandoned_jobs import Deadlines
from launchdeck.control_api.domain.sealing import KeyRing
from launchdeck.control_api.housekeeping.prune import Pruner, Retention
from launchdeck.control_api.logs.sweep import LogSweeper
from launchdeck.control_api.metrics import Metrics
from launchdeck.control_api.settings import Settings
from launchdeck.control_api.ws.routes import setup_ws_routes
from launchdeck.libs.outbox import OutboxRelay

# The running background tasks (outbox relay, events consumer, abandoned-jobs watcher, log
# sweeper, stuck-jobs sweeper, pruner, env requests server, generation RPC server,
# scheduler): `main` watches them and exits when one dies, so the process supervisor restarts
# the service.
BACKGROUND: web.AppKey[list[asyncio.Task[None]]] = web.AppKey("background")


def create_app(
    settings: Settings,
    pool: asyncpg.Pool,
    nc: Client,
    js: JetStreamContext,
    *,
    background_tasks: bool = True,
) -> web.Application:
    # Order: observation sees the final status, problems turns every error into problem+json,
    # auth runs inside so its 401s are problems too; audit sees the handler's answer; a write
    # drops cached list pages once its handler (and its commit) is done.
    app = web.Application(
        middlewares=[
            observe_middleware,
            problems_middleware,
            auth_middleware,
            audit_middleware,
            page_cache_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,  # a larger body is a 413 problem
    )
    app[SETTINGS] = settings
    app[POOL] = pool
    app[NC] = nc
    app[JS] = js
    app[METRICS] = Metrics()
    app[KEYRING] = KeyRing.from_secrets(settings.secret_key, settings.secret_key_previous)
    app[BACKGROUND] = []
    setup_token_checks(app)
    setup_page_cache(app)
    setup_system_routes(app)
    setup_project_routes(app)
    setup_build_routes(app)
    setup_deployment_routes(app)
    setup_env_routes(app)
    setup_hook_routes(app)
    setup_log_routes(app)
    setup_app_routes(app)
    setup_ws_routes(app)
    setup_schedule_routes(app)
    setup_run_routes(app)
    setup_generation_routes(app)
    setup_generation_result_routes(app)
    setup_generation_chart_routes(app)
    setup_template_routes(app)
    setup_token_routes(app)
    setup_audit_routes(app)
    setup_openapi_routes(app)
    setup_dashboard_routes(app)  # the web pages, over the routes above
    if background_tasks:
        app.cleanup_ctx.append(_run_background_tasks)
    return app


async def _run_background_tasks(app: web.Application) -> AsyncIterator[None]:
    pool, nc, js, metrics = app[POOL], app[NC], app[JS], app[METRICS]
    settings = app[SETTINGS]
    relay = OutboxRelay(pool, js)
    consumer = EventsConsumer(pool, js, metrics, on_change=app[BUILD_PAGES].invalidate)
    watcher = MaxDeliveriesWatcher(pool, nc, js, metrics)
    sweeper = LogSweeper(
        pool,
        js,
        metrics,
        interval_s=settings.log_sweep_interval_s,
        max_age_s=settings.build_log_retention_s,
    )
    deadlines = Deadlines(
        build_s=settings.build_max_timeout_s + settings.stuck_build_grace_s,
        deployment_s=settings.deploy_deadline_s,
    )
    stuck = StuckJobsSweeper(
        pool, js, deadlines, metrics, interval_s=settings.stuck_sweep_interval_s
    )
    retention = Retention(
        build_logs_s=settings.build_log_retention_s,
        processed_events_s=settings.processed_events_retention_s,
        keep_artifacts=settings.keep_artifacts,
        webhook_deliveries_s=settings.webhook_delivery_retention_s,
    )
    pruner = Pruner(pool, js, retention, metrics, interval_s=settings.prune_interval_s)
    env_server = EnvRequestServer(pool, nc, app[KEYRING])
    generation_rpc = GenerationRpcServer(pool, nc, app[KEYRING])
    scheduler = Scheduler(
        pool,
        js,
        metrics,
        edge_url=settings.scheduler.edge_url,
        base_domain=settings.base_domain,
        poll_interval_s=settings.scheduler.poll_interval_s,
        lease_ttl_s=settings.scheduler.lease_ttl_s,
        on_change=app[BUILD_PAGES].invalidate,
        generation=settings.generation,
    )
    tasks = app[BACKGROUND]
    tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
    tasks.append(asyncio.create_task(consumer.run(), name="events-consumer"))
    tasks.append(asyncio.create_task(watcher.run(), name="max-deliveries-watcher"))
    tasks.append(asyncio.create_task(sweeper.run(), name="log-sweeper"))
    tasks.append(asyncio.create_task(stuck.run(), name="stuck-jobs-sweeper"))
    tasks.append(asyncio.create_task(pruner.run(), name="pruner"))
    tasks.append(asyncio.create_task(env_server.run(), name="env-requests"))
    tasks.append(asyncio.create_task(generation_rpc.run(), name="generation-rpc"))
    tasks.append(asyncio.create_task(scheduler.run(), name="scheduler"))
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
