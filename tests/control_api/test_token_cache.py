"""`domain.tokens`: the per-process cache of token rows (the bound on how long a revocation
takes) and the `last_used_at` recorder (at most one write per token per interval), on a test
clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from launchdeck.control_api.domain.tokens import TokenCache, TokenRefused, UsageRecorder, check
from launchdeck.control_api.store.tokens import TokenRow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def row(**changes: object) -> TokenRow:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "t",
        "scopes": ["admin"],
        "project_id": None,
        "created_by": "tests",
        "created_at": datetime.now(UTC),
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": None,
        **changes,
    }
    return TokenRow(**fields)  # type: ignore[arg-type]


async def test_a_row_is_reused_for_at_most_the_ttl() -> None:
    clock = Clock()
    stored = {"row": row()}
    fetched: list[uuid.UUID] = []

    async def fetch(token_id: uuid.UUID) -> TokenRow | None:
        fetched.append(token_id)
        return stored["row"]

    cache = TokenCache(fetch, ttl_s=1.0, clock=clock)
    token_id = stored["row"].id
    assert await cache.get(token_id) is stored["row"]
    clock.now += 0.9
    stored["row"] = row(id=token_id, revoked_at=datetime.now(UTC))
    assert (await cache.get(token_id)).revoked_at is None  # still within the second
    assert len(fetched) == 1
    clock.now += 0.1
    assert (await cache.get(token_id)).revoked_at is not None  # read again: revoked
    assert len(fetched) == 2
    # "No such row" is cached the same way; forget() drops an entry at once.
    missing = uuid.uuid4()
    stored_missing: TokenRow | None = None

    async def fetch_missing(token_id: uuid.UUID) -> TokenRow | None:
        fetched.append(token_id)
        return stored_missing

    other = TokenCache(fetch_missing, ttl_s=1.0, clock=clock)
    assert await other.get(missing) is None
    assert await other.get(missing) is None
    assert fetched.count(missing) == 1
    other.forget(missing)
    assert await other.get(missing) is None
    assert fetched.count(missing) == 2


def test_check_refuses_unknown_revoked_and_expired() -> None:
    now = datetime.now(UTC)
    live = row(expires_at=now + timedelta(seconds=5))
    assert check(live, now=now) is live
    for bad, reason in [
        (None, "unknown token"),
        (row(revoked_at=now), "token revoked"),
        (row(expires_at=now), "token expired"),
    ]:
        with pytest.raises(TokenRefused, match=reason):
            check(bad, now=now)


async def test_last_used_is_written_at_most_once_per_interval() -> None:
    clock = Clock()
    writes: list[dict[uuid.UUID, datetime]] = []

    async def write(uses: dict[uuid.UUID, datetime]) -> None:
        writes.append(uses)

    recorder = UsageRecorder(write, interval_s=60, clock=clock)
    a, b = uuid.uuid4(), uuid.uuid4()
    for _ in range(10):
        recorder.used(a)
    recorder.used(b)
    await recorder.drain()
    assert [list(w) for w in writes] == [[a], [b]]
    clock.now += 59
    recorder.used(a)
    await recorder.drain()
    assert len(writes) == 2
    clock.now += 1
    recorder.used(a)
    await recorder.drain()
    assert [list(w) for w in writes] == [[a], [b], [a]]


async def test_a_failed_write_is_retried_on_the_next_use() -> None:
    clock = Clock()
    attempts: list[uuid.UUID] = []

    async def write(uses: dict[uuid.UUID, datetime]) -> None:
        attempts.extend(uses)
        if len(attempts) == 1:
            raise ConnectionRefusedError("postgres away")

    recorder = UsageRecorder(write, interval_s=60, clock=clock)
    token_id = uuid.uuid4()
    recorder.used(token_id)
    await recorder.drain()
    recorder.used(token_id)
    await recorder.drain()
    assert attempts == [token_id, token_id]
