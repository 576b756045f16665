"""Downloading objects from the JetStream object store with a pull consumer."""

from __future__ import annotations

import io
import os
import uuid

import pytest
from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError

from launchdeck.contracts.subjects import OBJECT_STORE_ARTIFACTS
from launchdeck.libs.objects import download


@pytest.mark.parametrize("size", [0, 1, 128 * 1024, 5 * 1024 * 1024 + 17])
async def test_download_returns_exactly_what_was_put(js: JetStreamContext, size: int) -> None:
    """Objects of every size (empty, one partial chunk, many chunks) come back byte for byte."""
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    name = f"test-{uuid.uuid4()}"
    data = os.urandom(size)
    await store.put(name, data)
    out = io.BytesIO()
    info = await download(js, OBJECT_STORE_ARTIFACTS, name, out)
    assert out.getvalue() == data
    assert info.size == size


async def test_download_of_a_missing_object_raises(js: JetStreamContext) -> None:
    """A name that is not in the store raises ObjectNotFoundError and writes nothing."""
    out = io.BytesIO()
    with pytest.raises(ObjectNotFoundError):
        await download(js, OBJECT_STORE_ARTIFACTS, f"missing-{uuid.uuid4()}", out)
    assert out.getvalue() == b""


async def test_download_of_a_replaced_object_returns_the_new_content(js: JetStreamContext) -> None:
    """Putting a name twice serves the second version (its chunks live on a new subject)."""
    store = await js.object_store(OBJECT_STORE_ARTIFACTS)
    name = f"test-{uuid.uuid4()}"
    await store.put(name, b"first version" * 20_000)
    await store.put(name, b"second")
    out = io.BytesIO()
    await download(js, OBJECT_STORE_ARTIFACTS, name, out)
    assert out.getvalue() == b"second"
