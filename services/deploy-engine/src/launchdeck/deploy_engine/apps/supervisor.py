"""Keeping a live instance's process running: restart after a crash, with exponential backoff.

A crash is any exit the engine did not ask for. The process is started again after a pause that
doubles from `restart_backoff_s` up to `restart_backoff_max_s`, and goes back to the first
pause once the process has stayed up for `crash_window_s`. `crash_limit` crashes within
`crash_window_s` make the instance *unhealthy* and its deployment is reported `unhealthy`
(`Fleet.health_changed`: a `DeploymentStatusChanged` event quoting the last exit and output);
the engine keeps restarting it, and the deployment is `active` again once the process serves
again — a web process passing its health check, a worker staying up `worker_start_s`. A web
process that starts but fails its health check is killed and counts as a crash.

Each instance has its own loop (a task): one project's crashing app never holds up another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from launchdeck.deploy_engine.apps.ports import NoFreePort
from launchdeck.deploy_engine.apps.process import SpawnFailed
from launchdeck.libs.cancellation import pause
from launchdeck.libs.env_client import EnvRefused, EnvUnavailable
from launchdeck.libs.logging import get_logger

if TYPE_CHECKING:
    from launchdeck.deploy_engine.apps.fleet import Fleet, Instance

log = get_logger(__name__)


async def supervise(fleet: Fleet, instance: Instance) -> None:
    """Run until the instance is stopped (`instance.stopping`, or the task is cancelled)."""
    settings = fleet.settings
    backoff = settings.restart_backoff_s
    record = instance.record
    if instance.project_vars is None and instance.process is not None:
        learning = asyncio.create_task(learn_secrets(fleet, instance))
        instance.background.add(learning)
        learning.add_done_callback(instance.background.discard)
    adopted_unhealthy = instance.unhealthy and instance.running
    # Adopted in a crash loop the previous engine reported: `active` again once it serves.
    if adopted_unhealthy and await fleet.wait_ready(instance) is None:
        await fleet.set_unhealthy(instance, False)
    while not instance.stopping:
        process = instance.process
        if process is not None:
            if process.running:
                stable_in = settings.crash_window_s - process.uptime_s()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(process.exited.wait()), max(0.0, stable_in)
                    )
                if process.running:  # up for a whole crash window: earlier crashes are history
                    backoff = settings.restart_backoff_s
                    await process.exited.wait()
            if instance.stopping:
                return
            how = await process.exit_description()
            await process.output_done()
            crashed(fleet, instance, how, backoff)
            instance.process = None
            crashes = instance.crash_count(settings.crash_window_s)
            if crashes >= settings.crash_limit and not instance.unhealthy:
                await fleet.set_unhealthy(instance, True)
            await pause(backoff)
            backoff = min(backoff * 2, settings.restart_backoff_max_s)
            continue
        try:
            await fleet.spawn(instance)
        except EnvRefused as exc:
            # The control-api says the deployment is not to run any more (superseded while the
            # engine was away): nothing to restart.
            log.warning("app_not_restarted", instance=record.id, reason=exc.reason)
            await fleet.abandon(instance)
            return
        except (EnvUnavailable, SpawnFailed, NoFreePort) as exc:
            instance.output.system(f"⚠ The {record.process} process could not be started: {exc}")
            log.warning("app_start_failed", instance=record.id, error=str(exc))
            instance.crashes.append(time.monotonic())
            await pause(backoff)
            backoff = min(backoff * 2, settings.restart_backoff_max_s)
            continue
        reason = await fleet.wait_ready(instance)
        if reason is None:
            log.info("app_restarted", instance=record.id, process=record.process, pid=record.pid)
            if instance.unhealthy:
                await fleet.set_unhealthy(instance, False)
            continue
        instance.output.system(f"⚠ {reason}")
        if instance.process is not None and instance.process.running:
            await instance.process.kill()  # up but not serving: a crash like any other


async def learn_secrets(fleet: Fleet, instance: Instance) -> None:
    """An adopted process's env vars, to mask its output with (held until then): asked of the
    control-api until it answers."""
    delay = fleet.settings.restart_backoff_s
    while instance.project_vars is None and not instance.stopping:
        try:
            await fleet.ensure_vars(instance)
        except EnvRefused as exc:
            instance.output.withhold(f"its env vars could not be had ({exc.reason})")
            return
        except EnvUnavailable:
            await pause(delay)
            delay = min(delay * 2, fleet.settings.restart_backoff_max_s)


def crashed(fleet: Fleet, instance: Instance, how: str, backoff_s: float) -> None:
    record = instance.record
    instance.crashes.append(time.monotonic())
    instance.restarts += 1
    instance.last_exit = how
    instance.output.system(
        f"⚠ The {record.process} process {how}; starting it again in {backoff_s:g}s"
    )
    log.warning(
        "app_crashed",
        instance=record.id,
        project=record.project,
        deployment_id=record.deployment_id,
        process=record.process,
        exit=how,
        restart_in_s=backoff_s,
        crashes_in_window=instance.crash_count(fleet.settings.crash_window_s),
    )
