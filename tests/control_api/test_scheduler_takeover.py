"""Two control-api processes on one NATS and one Postgres: exactly one schedules; when it is
SIGKILLed the other takes the lease over within seconds, and over the whole run every tick is
fired exactly once (none lost, none doubled), each with its one build."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from launchdeck.contracts.api import BuildAction
from launchdeck.control_api.domain import cron
from launchdeck.control_api.store import schedules as store
from launchdeck.devservers import free_port
from tests.control_api.helpers import new_project
from tests.libs.support import RestartableNats
from tests.nats_auth import login_url
from tests.polling import eventually
from tests.service_process import ServiceProcess, service_env

# Every 5 seconds (croniter's seconds field: the API takes five fields, the scheduler any),
# with a lease taken over well within one period.
EVERY_5_S = "* * * * * */5"
PERIOD = timedelta(seconds=5)
LEASE_TTL_S = 2.0


@pytest.fixture
def replicas(
    database_url: str, restartable_nats: RestartableNats, tmp_path: Path
) -> Iterator[list[ServiceProcess]]:
    processes = []
    for name in ("a", "b"):
        env = service_env(
            "control-api",
            tmp_path / f"state-{name}",
            DATABASE_URL=database_url,
            NATS_URL=login_url(restartable_nats.plain_url, "control-api"),
            LAUNCHDECK_API_PORT=str(free_port()),
            LAUNCHDECK_SCHEDULER_LEASE_TTL_S=str(LEASE_TTL_S),
            LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S="0.2",
        )
        processes.append(ServiceProcess("control-api", env, tmp_path / f"control-api-{name}.log"))
    yield processes
    for process in processes:
        process.kill()


def leader_events(process: ServiceProcess) -> list[dict[str, object]]:
    return [e for e in process.events() if e.get("event") == "scheduler_leader"]


async def test_the_other_replica_takes_over_and_no_tick_is_lost_or_doubled(
    pool: asyncpg.Pool, replicas: list[ServiceProcess]
) -> None:
    project = await new_project(pool)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        schedule = await store.insert(
            conn,
            schedule_id=uuid.uuid4(),
            project_id=project.id,
            name="every-5s",
            cron=EVERY_5_S,
            timezone="UTC",
            enabled=True,
            action=msgspec.to_builtins(BuildAction(deploy=False)),
            next_run_at=cron.next_tick(EVERY_5_S, "UTC", now + timedelta(seconds=3)),
        )
    for process in replicas:
        process.start()

    def leaders() -> list[ServiceProcess]:
        return [p for p in replicas if leader_events(p)]

    [leader] = await eventually("one replica to lead", leaders, timeout_s=30)

    async def fired(n: int) -> int:
        async with pool.acquire() as conn:
            count = len(await store.ticks_of(conn, schedule.id))
        return count if count >= n else 0

    before = await eventually("two ticks fired", lambda: fired(2), timeout_s=30)
    [follower] = [p for p in replicas if p is not leader]
    assert not leader_events(follower)
    await asyncio.to_thread(leader.kill)  # SIGKILL: no lease released, no goodbye
    killed = time.monotonic()

    await eventually("the other replica to lead", lambda: leader_events(follower), timeout_s=15)
    takeover_s = time.monotonic() - killed
    assert takeover_s < LEASE_TTL_S * 3, takeover_s
    await eventually("two more ticks", lambda: fired(before + 2), timeout_s=30)
    assert await asyncio.to_thread(follower.stop) == 0
    # Stopped cleanly, it let the lease go (the next replica would not wait for the TTL).
    assert [e for e in follower.events() if e.get("event") == "lease_released"]

    async with pool.acquire() as conn:
        ticks = await store.ticks_of(conn, schedule.id)
        made = await conn.fetch("SELECT id, trigger FROM builds WHERE project_id = $1", project.id)
    times = [t.tick_at for t in ticks]
    # Consecutive ticks, 5 s apart: none lost (a missed one would leave a gap or a count).
    assert all(b - a == PERIOD for a, b in itertools.pairwise(times)), times
    assert [t.missed_ticks for t in ticks] == [0] * len(ticks)
    # One build per tick, none without its tick.
    assert sorted(str(t.build_id) for t in ticks) == sorted(str(b["id"]) for b in made)
    assert len(set(times)) == len(times)
    assert len(made) == len(ticks)
    assert {b["trigger"] for b in made} == {"schedule"}
    print(f"takeover after SIGKILL: {takeover_s:.2f}s; ticks: {len(ticks)}")
