"""What the engine runs of one project, for the control-api (`ld.rpc.apps.report`, answered
over core NATS request/reply): every instance of every slot with its health, restarts, last
exit and uptime, and for a container app its image, limits and the container's state.

The logic (`apps_report`) reads the fleet; `serve_apps_reports` is only the transport.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import AppInstance, AppsReport, AppsReportRequest
from launchdeck.deploy_engine.apps.fleet import Fleet, Instance
from launchdeck.deploy_engine.apps.records import PRODUCTION
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

_decoder = msgspec.json.Decoder(AppsReportRequest)
_encoder = msgspec.json.Encoder()


def _order(instance: Instance) -> tuple[bool, str, str]:
    record = instance.record
    return (record.slot != PRODUCTION, record.slot, record.process)


def image_size(instance: Instance) -> int | None:
    """The size of the container release's image archive (what `load` reads), in bytes."""
    image = instance.manifest.image
    if image is None:
        return None
    try:
        return (Path(instance.record.release) / image.archive).stat().st_size
    except OSError:
        return None


def describe(instance: Instance, container_status: str | None) -> AppInstance:
    record, process = instance.record, instance.process
    running = instance.running
    image = instance.manifest.image if record.container else None
    return AppInstance(
        slot=record.slot,
        environment=record.environment,
        process=record.process,
        deployment_id=record.deployment_id,
        build_id=record.build_id,
        status=record.status,
        running=running,
        ready=instance.ready,
        healthy=running and instance.ready and not instance.unhealthy,
        pid=record.pid if running else None,
        port=record.port,
        restarts=instance.restarts,
        last_exit=instance.last_exit,
        uptime_s=round(process.uptime_s(), 1) if process is not None and running else None,
        container=record.container,
        image_id=image.id if image else None,
        image_size=image_size(instance) if image else None,
        memory_mb=record.memory_mb,
        cpus=record.cpus,
        container_status=container_status,
    )


async def apps_report(fleet: Fleet, project_id: str) -> AppsReport:
    instances = sorted(
        (i for i in fleet.instances.values() if i.record.project_id == project_id), key=_order
    )
    names = [i.record.container for i in instances if i.record.container]
    states = await fleet.containers.states(names) if fleet.containers and names else {}
    return AppsReport(
        project_id=project_id,
        instances=[
            describe(i, states.get(i.record.container) if i.record.container else None)
            for i in instances
        ],
    )


async def serve_apps_reports(nc: Client, fleet: Fleet) -> Subscription:
    """Answer `ld.rpc.apps.report` from `fleet` until the subscription ends. Every engine
    answers (no queue group): the asker takes the first answer."""

    async def answer(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            request = _decoder.decode(msg.data)
        except msgspec.MsgspecError as exc:
            log.warning("apps_report_request_malformed", error=str(exc))
            return
        report = await apps_report(fleet, request.project_id)
        await msg.respond(_encoder.encode(report))

    sub = await nc.subscribe(s.SUBJECT_APPS_REPORT, cb=answer)
    await nc.flush()
    return sub
