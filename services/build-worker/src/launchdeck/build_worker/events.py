"""Build status events: one `BuildStatusChanged` per step, deduplicated per attempt and status."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js import JetStreamContext

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import Artifact, BuildRequested, BuildStatusChanged
from launchdeck.contracts.statuses import BuildStatus
from launchdeck.contracts.subjects import build_event_subject
from launchdeck.libs.publish import publish_once_by_id


class StatusReporter:
    """Publishes a build's status changes; the commit, once known, rides on every later event."""

    def __init__(self, js: JetStreamContext, command: BuildRequested, attempt: int) -> None:
        self._js = js
        self._command = command
        self._attempt = attempt
        self._subject = build_event_subject(command.project_id, command.build_id)
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
    ) -> None:
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
        )
        await publish_once_by_id(
            self._js,
            self._subject,
            encode(event),
            msg_id=f"{self._command.build_id}:{self._attempt}:{status}",
        )
