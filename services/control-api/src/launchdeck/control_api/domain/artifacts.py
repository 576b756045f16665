"""Which artifacts the `artifacts` object store keeps: the logic half of artifact pruning (no
NATS here; `housekeeping.artifacts` lists and deletes the objects).

Every build stores its artifact (`<build>.tar.gz`) and nothing ever removed one, so the store
filled until every publish failed. An artifact is kept while something may still need it:
- its build has not finished (the artifact may be stored before the `succeeded` event is applied);
- a deployment of the build is pending, activating or active (production or a live preview);
- the build is among its project's `keep` newest succeeded production builds: what a rollback,
  or a redeploy of an earlier build, fetches when the deploy-engine no longer has the release on
  disk (keep at least as many as the engine's LAUNCHDECK_KEEP_RELEASES);
- it was stored within the last hour (`MIN_AGE`: a margin for whatever is on its way).
Every other build's artifact goes — superseded previews, old production builds, and every build
of a deleted project (its rows are gone). Objects whose key is not a build's are left alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from launchdeck.contracts.subjects import artifact_build_id
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import builds

MIN_AGE = timedelta(hours=1)
# Builds looked up per query.
CHUNK = 1000


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    stored_at: datetime | None  # when it was stored (None: unknown)


async def artifacts_to_prune(
    conn: Any,
    stored: Sequence[StoredArtifact],
    *,
    keep: int,
    now: datetime,
    min_age: timedelta = MIN_AGE,
) -> list[str]:
    """The keys among `stored` that nothing needs any more (module docstring), sorted."""
    owners: dict[str, uuid.UUID] = {}
    for artifact in stored:
        build_id = parse_uuid(artifact_build_id(artifact.key) or "")
        if build_id is None:
            continue  # not a build's artifact: not ours to prune
        if artifact.stored_at is not None and now - artifact.stored_at < min_age:
            continue
        owners[artifact.key] = build_id
    build_ids = sorted(set(owners.values()))
    needed: set[uuid.UUID] = set()
    for start in range(0, len(build_ids), CHUNK):
        chunk = build_ids[start : start + CHUNK]
        needed |= await builds.artifact_keepers(conn, chunk, keep=keep)
    return sorted(key for key, build_id in owners.items() if build_id not in needed)
