"""Helpers for tests on a NATS JetStream cluster (the fixtures are in tests/conftest.py:
`nats_cluster`, one 3-node cluster per test module, and `make_nats_cluster`, a fresh cluster per
call for tests that kill, stop or restart nodes).

A node of a cluster is a `launchdeck.devservers.NatsNode`: `kill()` is `kill -9`, `stop()` a
SIGTERM, `start()` brings it back on the same ports and store; `cluster.node(name)` finds the
node a stream's leader is named after. Blocking calls (`start`, `wait_ready`) go through
`asyncio.to_thread` in async tests, so the clients on the event loop keep running meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from launchdeck.devservers import NatsCluster
from tests.polling import eventually

# The `make_nats_cluster` fixture: `make_nats_cluster(size=3, config="")` → a running cluster.
MakeNatsCluster = Callable[..., NatsCluster]

# A new stream leader is elected within a few seconds of losing one; this leaves room for a
# busy test machine.
LEADER_DEADLINE_S = 30.0


async def stream_leader(js: JetStreamContext, stream: str) -> str | None:
    """The server name of `stream`'s current leader, or None while it has none (or the stream
    does not answer)."""
    try:
        info = await js.stream_info(stream)
    except (APIError, nats.errors.Error, TimeoutError):
        return None
    return info.cluster.leader if info.cluster is not None else None


async def stream_replicas(js: JetStreamContext, stream: str) -> int:
    """`stream`'s configured replicas (1 when the server leaves it out)."""
    info = await js.stream_info(stream)
    return info.config.num_replicas or 1


async def new_leader(
    js: JetStreamContext, stream: str, instead_of: str, timeout_s: float = LEADER_DEADLINE_S
) -> str:
    """Wait until `stream` answers with a leader other than `instead_of` (a node just lost);
    return its name."""

    async def elected() -> str:
        leader = await stream_leader(js, stream)
        return leader if leader is not None and leader != instead_of else ""

    return await eventually(f"a new leader of {stream}", elected, timeout_s)
