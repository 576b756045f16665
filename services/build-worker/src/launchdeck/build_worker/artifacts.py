"""Storing a packed release in the `artifacts` object store, retried (`libs.retry`) a few times."""

from __future__ import annotations

import asyncio
import base64

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta

from launchdeck.build_worker.package import Package
from launchdeck.contracts.messages import Artifact
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS
from launchdeck.libs.retry import retrying

UPLOAD_ATTEMPTS = 5
BACKOFF_S = 0.5  # the first retry's delay; doubling up to MAX_BACKOFF_S
MAX_BACKOFF_S = 4.0


class ArtifactMismatch(RuntimeError):
    """The object store computed a different digest or size than the file we packed."""


def artifact_key(build_id: str) -> str:
    return f"{build_id}.tar.gz"


def _store_digest(sha256_hex: str) -> str:
    # The object store's own digest format: "SHA-256=" + base64url of the raw digest.
    return "SHA-256=" + base64.urlsafe_b64encode(bytes.fromhex(sha256_hex)).decode()


async def upload_artifact(
    js: JetStreamContext,
    build_id: str,
    package: Package,
    *,
    attempts: int = UPLOAD_ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> Artifact:
    """Put `package` under `<build_id>.tar.gz` and check what the store received."""
    key = artifact_key(build_id)
    async for attempt in retrying(
        attempts=attempts,
        first_delay_s=backoff_s,
        max_delay_s=MAX_BACKOFF_S,
        retry_on=(nats.errors.Error, TimeoutError, ArtifactMismatch),
        log_event="artifact_upload_retrying",
    ):
        with attempt:
            store = await js.object_store(OBJECT_STORE_ARTIFACTS)
            f = await asyncio.to_thread(package.path.open, "rb")
            try:
                info = await store.put(
                    key, f, meta=ObjectMeta(name=key, description=f"build {build_id}")
                )
            finally:
                f.close()
            if info.size != package.size or info.digest != _store_digest(package.sha256):
                raise ArtifactMismatch(
                    f"stored {info.size} bytes / {info.digest}, packed {package.size} bytes"
                )
            return Artifact(key=key, sha256=package.sha256, size=package.size, kind="static")
    raise AssertionError("unreachable: the last failed attempt raises")
