"""Publishing what `domain.abandoned_jobs` decided about a job nobody will finish: the transport
half shared by the max-deliveries watcher (`advisories`) and the deadline sweep (`stuck_jobs`).

The failure event goes to EVENTS with a `Nats-Msg-Id` of its own (one per build or deployment),
so the ordinary events consumer applies it — and a job that both paths judge, or that two
replicas judge, is published once. Then the build's log gets its eof, so live viewers end.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import BuildStatusChanged
from launchdeck.contracts.subjects import build_event_subject, deployment_event_subject
from launchdeck.control_api.domain.abandoned_jobs import Verdict, event_msg_id
from launchdeck.control_api.domain.events import Event
from launchdeck.control_api.logs.eof import ensure_log_eof


def event_subject(event: Event) -> str:
    if isinstance(event, BuildStatusChanged):
        return build_event_subject(event.project_id, event.build_id)
    return deployment_event_subject(event.project_id, event.deployment_id)


async def publish_verdict(js: JetStreamContext, verdict: Verdict) -> None:
    """Publish the verdict's event (if any), then end the build's log (if it says to)."""
    if verdict.event is not None:
        await js.publish(
            event_subject(verdict.event),
            encode(verdict.event),
            headers={"Nats-Msg-Id": event_msg_id(verdict.event)},
        )
    if verdict.log_eof is not None:
        eof = verdict.log_eof
        await ensure_log_eof(js, eof.build_id, eof.status, attempt=eof.attempt)
