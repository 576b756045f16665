"""The `artifacts` object store as pruning sees it: what it holds, and removing one object for
good (its chunks, and its metadata too, so not even a tombstone per deleted build is left)."""

from __future__ import annotations

import base64
import contextlib
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError

from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS
from launchdeck.control_api.domain.artifacts import StoredArtifact

ARTIFACTS_STREAM = f"OBJ_{OBJECT_STORE_ARTIFACTS}"


def _stored_at(mtime: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(mtime) if mtime else None
    except ValueError:
        return None


async def stored_artifacts(js: JetStreamContext) -> list[StoredArtifact]:
    """Every object in the store (deleted ones left out)."""
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    try:
        infos = await store.list(ignore_deletes=True)
    except NotFoundError:  # an empty store
        return []
    return [StoredArtifact(info.name, _stored_at(info.mtime)) for info in infos if info.name]


def _meta_subject(key: str) -> str:
    name = base64.urlsafe_b64encode(key.encode()).decode()
    return f"$O.{OBJECT_STORE_ARTIFACTS}.M.{name}"


async def delete_artifact(js: JetStreamContext, key: str) -> None:
    """Remove `key`'s chunks and metadata (nothing when it is gone already)."""
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    with contextlib.suppress(ObjectNotFoundError):
        await store.delete(key)  # purges the chunks, leaves a `deleted` marker
    await js.purge_stream(ARTIFACTS_STREAM, subject=_meta_subject(key))  # and the marker
