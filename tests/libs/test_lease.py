"""The KV lease (`libs.lease`) on a real NATS: one holder at a time; a released lease is taken at
the next check; a holder that stops renewing is taken over after its TTL, and learns it lost
the lease at its next renewal."""

from __future__ import annotations

import uuid

import msgspec
from nats.js import JetStreamContext

from launchdeck.contracts.subjects import KV_LEASES
from launchdeck.libs.lease import Lease, LeaseValue
from tests.polling import eventually


def pair(js: JetStreamContext, ttl_s: float = 1.0) -> tuple[Lease, Lease]:
    key = f"test-{uuid.uuid4().hex[:12]}"
    return (
        Lease(js, key, ttl_s=ttl_s, holder="a"),
        Lease(js, key, ttl_s=ttl_s, holder="b"),
    )


async def test_one_holder_at_a_time_and_release_hands_over(js: JetStreamContext) -> None:
    a, b = pair(js)
    assert await a.check()
    assert not await b.check()
    assert await a.check()  # renewed
    kv = await js.key_value(KV_LEASES)
    value = msgspec.json.decode((await kv.get(a.key)).value or b"", type=LeaseValue)
    assert value.holder == "a"
    assert value.ttl_s == 1.0
    assert value.expires_at > value.renewed_at
    await a.release()
    assert not a.held
    assert await b.check()


async def test_a_silent_holder_is_taken_over_after_its_ttl(js: JetStreamContext) -> None:
    """`a` stops renewing (as a killed process would): `b` takes over once it has seen the same
    revision for the TTL; `a` is no longer `held` (self-fenced) and its next renewal fails."""
    a, b = pair(js, ttl_s=1.0)
    changes: list[bool] = []
    a._on_change = changes.append
    assert await a.check()
    assert not await b.check()
    assert await eventually("b to take over", b.check, timeout_s=5, interval_s=0.1)
    assert not a.held
    assert not await a.check()  # the renewal finds b's revision: lost
    assert changes == [True, False]
    assert await b.check()
