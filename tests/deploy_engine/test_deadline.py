"""A deploy command that reaches the engine after the deploy deadline (the engine was down, its
queue backed up) is failed without touching the site: the control-api fails deployments left
pending that long, and a late activation would switch the site behind that record's back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from launchdeck.contracts import subjects as s
from launchdeck.contracts.messages import DeployRequested
from launchdeck.libs.jobs import Delivery, Outcome
from tests.deploy_engine.support import Engine

from .archives import site

V1 = {"index.html": "<h1>Version one</h1>"}
V2 = {"index.html": "<h1>Version two</h1>"}


async def test_a_command_past_the_deploy_deadline_is_failed_and_activates_nothing(
    engine: Engine,
) -> None:
    """Deadline 1 h: a command requested 2 h ago fails with the reason, the live site stays
    and no release is extracted; one requested a minute ago deploys."""
    engine.handler.requested_within_s = 3600.0
    assert (await engine.deploy(str(uuid.uuid4()), V1))[0] is Outcome.ACK

    async def deploy_requested(ago: timedelta) -> tuple[str, Outcome, list[str | None]]:
        build_id = str(uuid.uuid4())
        cmd = DeployRequested(
            deployment_id=str(uuid.uuid4()),
            project_id=engine.project_id,
            project_name=engine.project,
            build_id=build_id,
            environment="production",
            artifact=await engine.put_artifact(build_id, site(V2)),
            requested_at=datetime.now(UTC) - ago,
        )
        delivery = Delivery(
            num_delivered=1, max_deliver=3, subject=s.SUBJECT_DEPLOY_JOBS, stream_seq=1
        )
        outcome = await engine.handler.handle_deploy(cmd, delivery)
        events = await engine.events(cmd.deployment_id)
        return build_id, outcome, [f"{e.status}: {e.error}" for e in events]

    late, outcome, events = await deploy_requested(timedelta(hours=2))
    assert outcome is Outcome.ACK
    assert len(events) == 1
    assert events[0] is not None
    assert events[0].startswith("failed: the deploy command arrived 72")
    assert events[0].endswith(
        "s after it was requested, past the deploy deadline of 3600s: nothing was activated"
    )
    assert (await engine.get("/"))[2] == "<h1>Version one</h1>"
    assert not engine.edge.store.release_dir(engine.project, late).exists()

    on_time, outcome, events = await deploy_requested(timedelta(minutes=1))
    assert events == ["activating: None", "active: None"]
    assert (await engine.get("/"))[2] == "<h1>Version two</h1>"
    assert engine.edge.store.active_build(engine.project) == on_time
