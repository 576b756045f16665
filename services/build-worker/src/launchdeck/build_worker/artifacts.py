"""Storing a packed release in the `artifacts` object store, retried through a NATS outage until
the build's deadline (`libs.publish.until_deadline`)."""

from __future__ import annotations

import asyncio
import base64

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta

from launchdeck.contracts.messages import Artifact
from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS, artifact_key
from launchdeck.libs.outage import Outage
from launchdeck.libs.publish import RETRY_ON, until_deadline
from launchdeck.libs.tarball import Package

# A store that keeps computing another digest than ours is broken, not away: stop after these.
MAX_MISMATCHES = 3


class ArtifactMismatch(RuntimeError):
    """The object store computed a different digest or size than the file we packed."""


class ArtifactCorrupted(RuntimeError):
    """The object store disagreed with the packed file `MAX_MISMATCHES` times in a row."""


def _store_digest(sha256_hex: str) -> str:
    # The object store's own digest format: "SHA-256=" + base64url of the raw digest.
    return "SHA-256=" + base64.urlsafe_b64encode(bytes.fromhex(sha256_hex)).decode()


async def upload_artifact(
    js: JetStreamContext, build_id: str, package: Package, *, deadline: float
) -> Artifact:
    """Put `package` under `<build_id>.tar.gz` and check what the store received; through an
    outage until `deadline` (`time.monotonic()`), then `NatsUnavailable`."""
    key = artifact_key(build_id)
    mismatches = 0

    async def put(_timeout_s: float) -> Artifact:  # each chunk has nats-py's own timeout
        nonlocal mismatches
        store = await js.object_store(OBJECT_STORE_ARTIFACTS)
        f = await asyncio.to_thread(package.path.open, "rb")
        try:
            info = await store.put(
                key, f, meta=ObjectMeta(name=key, description=f"build {build_id}")
            )
        finally:
            f.close()
        if info.size != package.size or info.digest != _store_digest(package.sha256):
            mismatches += 1
            what = f"stored {info.size} bytes / {info.digest}, packed {package.size} bytes"
            if mismatches >= MAX_MISMATCHES:
                raise ArtifactCorrupted(f"{what} ({mismatches} times)")
            raise ArtifactMismatch(what)
        return Artifact(key=key, sha256=package.sha256, size=package.size, kind="static")

    return await until_deadline(
        put,
        js=js,
        deadline=deadline,
        what=f"the artifact {key}",
        outage=Outage("nats", build_id=build_id, object=key),
        retry_on=(*RETRY_ON, ArtifactMismatch),
    )
