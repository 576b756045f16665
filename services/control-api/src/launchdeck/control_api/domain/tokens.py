"""API tokens: creation, revocation, and the per-request check against Postgres.

A token is a JWT (libs/tokens.py) whose `jti` is the id of its `api_tokens` row. The signature
proves who minted it; the row says whether it still counts: an unknown jti, a revoked or an
expired row is refused. Rows are looked up through `TokenCache` (at most `CACHE_TTL_S` old), so
a revocation takes effect on every replica within about that long, without a query per request.
`UsageRecorder` keeps `last_used_at` within `USAGE_INTERVAL_S` with at most one write per token
per interval, off the request's path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from launchdeck.contracts.api import TOKEN_SCOPES, TokenCreate
from launchdeck.control_api.domain.errors import Invalid, NotFound
from launchdeck.control_api.store import audit
from launchdeck.control_api.store import tokens as store
from launchdeck.control_api.store.tokens import TokenRow
from launchdeck.libs.tokens import TokenClaims, digest, mint

ADMIN = "admin"
# How old a looked-up row may be: the bound on how long a revoked token keeps working.
CACHE_TTL_S = 1.0
# `last_used_at` is written at most once per token per this interval (by each replica).
USAGE_INTERVAL_S = 60.0
# Past this many cached rows, expired entries are dropped (a flood of distinct valid tokens
# cannot grow the cache without bound: each entry lives CACHE_TTL_S at most).
_CACHE_SWEEP_AT = 10_000


class TokenRefused(Exception):
    """The token's row says no: unknown, revoked or expired (the message says which)."""


class TokenCache:
    """Rows of `api_tokens` by jti, each kept at most `ttl_s` (also "no such row")."""

    def __init__(
        self,
        fetch: Callable[[uuid.UUID], Awaitable[TokenRow | None]],
        *,
        ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._rows: dict[uuid.UUID, tuple[float, TokenRow | None]] = {}

    async def get(self, token_id: uuid.UUID) -> TokenRow | None:
        now = self._clock()
        cached = self._rows.get(token_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        # Timed from before the query: the entry is never older than ttl_s counted from
        # a moment the row could have been read.
        row = await self._fetch(token_id)
        if len(self._rows) >= _CACHE_SWEEP_AT:
            self._rows = {k: v for k, v in self._rows.items() if now - v[0] < self._ttl_s}
        self._rows[token_id] = (now, row)
        return row

    def forget(self, token_id: uuid.UUID) -> None:
        """Drop the cached row (this replica revoked it: no need to wait for the TTL here)."""
        self._rows.pop(token_id, None)


def check(row: TokenRow | None, *, now: datetime | None = None) -> TokenRow:
    """The row if the token it describes may be used now, else TokenRefused."""
    if row is None:
        raise TokenRefused("unknown token")
    if row.revoked_at is not None:
        raise TokenRefused("token revoked")
    if row.expires_at is not None and row.expires_at <= (now or datetime.now(UTC)):
        raise TokenRefused("token expired")
    return row


async def authenticate(cache: TokenCache, claims: TokenClaims) -> TokenRow:
    """The token's row, after the signature was verified: TokenRefused unless it counts."""
    try:
        token_id = uuid.UUID(claims.jti)
    except ValueError:
        raise TokenRefused("unknown token") from None
    return check(await cache.get(token_id))


class UsageRecorder:
    """Notes each use of a token; writes `last_used_at` at most once per token per
    `interval_s`, in a task of its own (a request never waits for it, nor fails with it)."""

    def __init__(
        self,
        write: Callable[[dict[uuid.UUID, datetime]], Awaitable[None]],
        *,
        interval_s: float = USAGE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._interval_s = interval_s
        self._clock = clock
        self._written: dict[uuid.UUID, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def used(self, token_id: uuid.UUID) -> None:
        now = self._clock()
        last = self._written.get(token_id)
        if last is not None and now - last < self._interval_s:
            return
        if len(self._written) >= _CACHE_SWEEP_AT:
            self._written = {k: v for k, v in self._written.items() if now - v < self._interval_s}
        self._written[token_id] = now
        task = asyncio.create_task(self._record(token_id, datetime.now(UTC)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, token_id: uuid.UUID, at: datetime) -> None:
        try:
            await self._write({token_id: at})
        except Exception:  # best effort, never a request's failure: Postgres away, a timeout…
            # Try again on the token's next use rather than lose it for good.
            self._written.pop(token_id, None)

    async def drain(self) -> None:
        """Wait for the writes under way (on shutdown, and in tests)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def check_request(body: TokenCreate) -> list[str]:
    """The scopes of a valid request, in their canonical order (Invalid otherwise)."""
    scopes = set(body.scopes)
    if ADMIN in scopes:
        if scopes != {ADMIN}:
            raise Invalid.field("scopes", "'admin' cannot be combined with other scopes")
        if body.project_id is not None:
            raise Invalid.field("project_id", "an admin token is not bound to a project")
        return [ADMIN]
    if body.project_id is None:
        raise Invalid.field("project_id", "required for a token that is not admin")
    if len(scopes) != len(body.scopes):
        raise Invalid.field("scopes", "each scope at most once")
    return [s for s in TOKEN_SCOPES if s in scopes]


async def create_token(
    conn: Any,
    secret: str,
    body: TokenCreate,
    *,
    project_id: uuid.UUID | None,
    created_by: TokenRow,
    request_id: str | None = None,
) -> tuple[str, TokenRow]:
    """Mint the token and store its row and the audit entry together; returns the value (shown
    once, stored nowhere) and the row."""
    scopes = check_request(body)
    token_id = uuid.uuid4()
    value, claims = mint(
        secret,
        subject=body.name,
        scopes=scopes,
        project_id=str(project_id) if project_id else None,
        expires_in_s=body.expires_in,
        jti=str(token_id),
    )
    expires_at = (
        datetime.fromtimestamp(claims.expires_at, UTC) if claims.expires_at is not None else None
    )
    async with conn.transaction():
        row = await store.insert(
            conn,
            token_id=token_id,
            name=body.name,
            scopes=scopes,
            project_id=project_id,
            expires_at=expires_at,
            token_sha256=digest(value),
            created_by=created_by.name,
        )
        await audit.insert(
            conn,
            token_id=created_by.id,
            token_name=created_by.name,
            action="token.create",
            project_id=project_id,
            target=str(token_id),
            detail={"name": body.name, "scopes": scopes, "expires_in": body.expires_in},
            request_id=request_id,
        )
    return value, row


async def revoke_token(
    conn: Any, token_id: uuid.UUID, *, revoked_by: TokenRow, request_id: str | None = None
) -> TokenRow:
    async with conn.transaction():
        row = await store.revoke(conn, token_id)
        if row is None:
            raise NotFound("no such token")
        await audit.insert(
            conn,
            token_id=revoked_by.id,
            token_name=revoked_by.name,
            action="token.revoke",
            project_id=row.project_id,
            target=str(token_id),
            detail={"name": row.name, "scopes": row.scopes},
            request_id=request_id,
        )
    return row
