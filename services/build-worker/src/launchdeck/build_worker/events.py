"""Build status events: one `BuildStatusChanged` per step, deduplicated per attempt and status.

Each event is retried through a NATS outage until the build's deadline (`libs.publish`), then
fails the attempt with `NatsUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import Artifact, BuildRequested, BuildStatusChanged
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import build_event_subject
from launchdeck.libs.outage import Outage
from launchdeck.libs.publish import publish_once_by_id


class StatusReporter:
    """Publishes a build's status changes; the commit, once known, rides on every later event."""

    def __init__(
        self,
        js: JetStreamContext,
        command: BuildRequested,
        attempt: int,
        *,
        deadline: Callable[[], float],
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        """`deadline()`: until when (`time.monotonic()`) an event may wait for NATS; `on_stored`:
        called after each stored event (the job's progress, for the watchdog)."""
        self._js = js
        self._command = command
        self._attempt = attempt
        self._subject = build_event_subject(command.project_id, command.build_id)
        self.deadline = deadline
        self._on_stored = on_stored
        self._outage = Outage("nats", build_id=command.build_id, subject=self._subject)
        self.commit_sha: str | None = None
        self.commit_message: str | None = None
        self.step: str | None = None  # the step last reported: where a failure happened

    async def report(
        self,
        status: BuildStatus,
        *,
        step: str | None = None,
        error: str | None = None,
        artifact: Artifact | None = None,
        deadline: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Publish one status change; `deadline` overrides the build's (a last report made after
        the build's deadline passed still gets a moment); `reason`: why it ended so
        (`messages.BUILD_REASON_*`)."""
        if step is not None:
            self.step = step
        event = BuildStatusChanged(
            build_id=self._command.build_id,
            project_id=self._command.project_id,
            status=status,
            step=step,
            attempt=self._attempt,
            error=error,
            commit_sha=self.commit_sha,
            commit_message=self.commit_message,
            artifact=artifact,
            at=datetime.now(UTC),
            reason=reason,
        )
        await publish_once_by_id(
            self._js,
            self._subject,
            encode(event),
            msg_id=f"{self._command.build_id}:{self._attempt}:{status}",
            deadline=self.deadline() if deadline is None else deadline,
            what=f"the build's {status!r} event",
            outage=self._outage,
        )
        if self._on_stored is not None:
            self._on_stored()
