"""Loading one resource by the `{id}` of its route, for a token that may use its project.

Builds, deployments, runs and schedules all answer the same way: a malformed id, a missing row
and another project's row are one 404, so a scoped token learns nothing of other projects.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web

from launchdeck.control_api.api.auth import require_scope
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.domain.errors import NotFound
from launchdeck.control_api.domain.projects import parse_uuid


class OfProject(Protocol):
    @property
    def project_id(self) -> uuid.UUID: ...


RecordT = TypeVar("RecordT", bound=OfProject)


async def load_of_project(
    request: web.Request,
    raw_id: str,
    what: str,
    get: Callable[[Any, uuid.UUID], Awaitable[RecordT | None]],
    scope: str = "read",
) -> RecordT:
    """The `what` whose id is `raw_id` (fetched with `get`), if the token may use its project
    with `scope`; NotFound otherwise."""
    record_id = parse_uuid(raw_id)
    record = None
    if record_id is not None:
        async with request.app[POOL].acquire() as conn:
            record = await get(conn, record_id)
    if record is None:
        raise NotFound(f"no {what} {raw_id!r}")
    require_scope(request, record.project_id, scope, not_found=f"no {what} {raw_id!r}")
    return record
