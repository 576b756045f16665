"""Reading objects from a JetStream object store, fast.

nats-py's `ObjectStore.get` reads the chunks through an ordered push consumer, which on this
machine takes ~260 ms for a 5 MB artifact; an ephemeral pull consumer fetching the chunks in
batches takes ~20 ms. Same data, same digest check.
"""

from __future__ import annotations

import base64
import hashlib
from typing import BinaryIO

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectInfo
from nats.js.errors import BadObjectMetaError, DigestMismatchError
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DIGEST_TYPE,
    OBJ_STREAM_TEMPLATE,
)

FETCH_BATCH = 64  # chunks per pull request (64 chunks of 128 KiB)


def _digest_bytes(info: ObjectInfo) -> bytes:
    digest = info.digest or ""
    if not digest.upper().startswith(OBJ_DIGEST_TYPE.upper()):
        raise BadObjectMetaError
    return base64.urlsafe_b64decode(digest[len(OBJ_DIGEST_TYPE) :])


async def download(
    js: JetStreamContext, bucket: str, name: str, out: BinaryIO, *, timeout_s: float = 10.0
) -> ObjectInfo:
    """Write object `name` of `bucket` to `out`; verify its digest.

    Raises nats' ObjectNotFoundError, BadObjectMetaError or DigestMismatchError.
    """
    store = await js.object_store(bucket)
    info = await store.get_info(name)
    if not info.nuid:
        raise BadObjectMetaError
    expected = _digest_bytes(info)
    if not info.size:
        if hashlib.sha256(b"").digest() != expected:
            raise DigestMismatchError
        return info
    sub = await js.pull_subscribe(
        OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid),
        stream=OBJ_STREAM_TEMPLATE.format(bucket=bucket),
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=30.0,
        ),
    )
    digest = hashlib.sha256()
    received = 0
    try:
        while received < (info.chunks or 0):
            batch = min(FETCH_BATCH, (info.chunks or 0) - received)
            for msg in await sub.fetch(batch, timeout=timeout_s):
                digest.update(msg.data)
                out.write(msg.data)
                received += 1
    finally:
        await sub.unsubscribe()
    if digest.digest() != expected:
        raise DigestMismatchError
    return info
