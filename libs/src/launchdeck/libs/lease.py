"""A leader lease in a NATS KV bucket: at most one holder at a time among any number of replicas,
taken over within seconds when the holder dies.

One key per role (`scheduler`) in the `leases` bucket. Its value (`LeaseValue`, JSON) names the
holder and says until when the holder means to hold it; each write gets a new revision.

- **Taking it**: `kv.create` — succeeds only when the key does not exist (never written,
  deleted by a holder that stopped, or expired with the bucket's max age).
- **Keeping it**: the holder rewrites it every `ttl_s / 3` with `kv.update(last=revision)`,
  which fails if anyone else wrote in between: then the holder has lost it, and says so.
- **A dead holder**: a follower that sees the same revision for a whole `ttl_s` on its own
  monotonic clock (or a value whose `expires_at` is more than `ttl_s` past by its wall clock,
  for a follower that has just started) takes it over with `kv.update(last=that revision)`:
  of several followers, exactly one write succeeds. Takeover time: at most `ttl_s` plus one
  renewal interval after the holder's last renewal — clock skew between machines plays no part
  in the first rule.
- **Fencing itself**: the holder counts as holding (`held`) only while its last successful
  renewal is less than 90 % of `ttl_s` old, so when it cannot reach NATS it stops acting before
  any follower may take over.
- **Stopping**: the holder deletes the key (only if still its own revision), so a follower
  takes over at its next check instead of after `ttl_s`.

The bucket's max age (30 s, `libs.provisioning`) only collects keys nobody renews any more; the
lease's own `ttl_s` decides takeover, so it can be shorter without touching the bucket (an
existing bucket's configuration is never changed at start-up). A lease is a way to have one
actor most of the time, not a proof: whatever it guards must stay safe with two actors for a
moment (the scheduler's ticks are idempotent in Postgres).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from launchdeck.contracts.subjects import KV_LEASES
from launchdeck.libs.logging import get_logger
from launchdeck.libs.periodic import run_periodically

log = get_logger(__name__)

# While held, the holder acts only within this share of the TTL after its last renewal.
SELF_FENCE = 0.9


class LeaseValue(msgspec.Struct, kw_only=True, frozen=True):
    """What the lease key holds (JSON; `nats kv get leases scheduler` shows it)."""

    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    ttl_s: float


_decoder = msgspec.json.Decoder(LeaseValue)


def holder_id() -> str:
    """This process's name as a holder: host, pid and a random suffix (a restarted process
    with the same pid is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """Take and keep the lease `key` of `bucket` while `run()` runs; `held` says whether this
    replica may act now. `on_change(held)` is called on every change (metrics, logs)."""

    def __init__(
        self,
        js: JetStreamContext,
        key: str,
        *,
        ttl_s: float,
        holder: str | None = None,
        bucket: str = KV_LEASES,
        on_change: Callable[[bool], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be more than 0")
        self.js = js
        self.key = key
        self.bucket = bucket
        self.ttl_s = ttl_s
        self.holder = holder or holder_id()
        self._on_change = on_change
        self._monotonic = monotonic
        self._wall = wall
        self._kv: KeyValue | None = None
        self._revision: int | None = None  # ours, while we hold it
        self._acquired_at: datetime | None = None
        self._valid_until = 0.0  # monotonic
        # A follower's view of the key: the revision it saw and since when (monotonic).
        self._seen: tuple[int, float] | None = None
        self._was_held = False

    @property
    def interval_s(self) -> float:
        """How often the holder renews and a follower looks."""
        return self.ttl_s / 3

    @property
    def held(self) -> bool:
        return self._revision is not None and self._monotonic() < self._valid_until

    async def run(self) -> None:
        """Try to take or keep the lease every `interval_s` until cancelled; then let it go."""
        try:
            await run_periodically(f"lease {self.key}", self.interval_s, self.check)
        finally:
            await asyncio.shield(self.release())

    async def check(self) -> bool:
        """One round: renew it when held, else take it if free or stale. Returns `held`.

        NATS errors propagate (`run` logs an outage once and tries again at the next round);
        meanwhile `held` runs out by itself (self-fencing)."""
        try:
            if self._revision is not None:
                await self._renew()
            else:
                await self._try_take()
        finally:
            self._notify()
        return self.held

    async def release(self) -> None:
        """Delete the key if it is still ours, so a follower takes over at once."""
        revision, self._revision = self._revision, None
        self._notify()
        if revision is None or self._kv is None:
            return
        try:
            await self._kv.delete(self.key, last=revision)
            log.info("lease_released", key=self.key, holder=self.holder)
        except Exception as exc:  # expired, taken, or NATS away: the TTL covers it
            log.info("lease_not_released", key=self.key, error=repr(exc))

    # --- internals ----------------------------------------------------------------------------

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.js.key_value(self.bucket)
        return self._kv

    def _value(self) -> bytes:
        now = self._wall()
        if self._acquired_at is None:
            self._acquired_at = now
        value = LeaseValue(
            holder=self.holder,
            acquired_at=self._acquired_at,
            renewed_at=now,
            expires_at=now + timedelta(seconds=self.ttl_s),
            ttl_s=self.ttl_s,
        )
        return msgspec.json.encode(value)

    async def _renew(self) -> None:
        kv = await self._bucket()
        sent = self._monotonic()
        try:
            self._revision = await kv.update(self.key, self._value(), last=self._revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            log.warning("lease_lost", key=self.key, holder=self.holder)
            self._revision = None
            self._acquired_at = None
            return
        self._valid_until = sent + self.ttl_s * SELF_FENCE

    async def _try_take(self) -> None:
        kv = await self._bucket()
        sent = self._monotonic()
        try:
            entry = await kv.get(self.key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        if entry is None:
            self._acquired_at = None
            try:
                revision = await kv.create(self.key, self._value())
            except nats.js.errors.KeyWrongLastSequenceError:
                return  # another replica was quicker
            self._take(revision, sent, previous=None)
            return
        assert entry.revision is not None
        if not self._stale(entry.revision, entry.value or b""):
            return
        self._acquired_at = None
        try:
            revision = await kv.update(self.key, self._value(), last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return  # renewed meanwhile, or another follower took it
        self._take(revision, sent, previous=entry.value)

    def _stale(self, revision: int, raw: bytes) -> bool:
        """Whether the holder of `revision` is gone: the same revision seen for a whole TTL
        (the TTL the value declares), or its expiry more than that TTL past by our clock."""
        now = self._monotonic()
        if self._seen is None or self._seen[0] != revision:
            self._seen = (revision, now)
        try:
            value = _decoder.decode(raw)
        except msgspec.DecodeError:
            return now - self._seen[1] >= self.ttl_s
        if value.holder == self.holder:
            return True  # our own, from before a lost renewal
        if self._wall() > value.expires_at + timedelta(seconds=value.ttl_s):
            return True
        return now - self._seen[1] >= value.ttl_s

    def _take(self, revision: int, sent: float, previous: bytes | None) -> None:
        self._revision = revision
        self._valid_until = sent + self.ttl_s * SELF_FENCE
        self._seen = None
        before = None
        if previous:
            try:
                before = _decoder.decode(previous).holder
            except msgspec.DecodeError:
                before = "unreadable"
        log.info("lease_acquired", key=self.key, holder=self.holder, took_over_from=before)

    def _notify(self) -> None:
        held = self.held
        if held != self._was_held:
            self._was_held = held
            if self._on_change is not None:
                self._on_change(held)
