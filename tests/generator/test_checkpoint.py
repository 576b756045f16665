"""`NatsCheckpoint` over real NATS, answered by a small responder in the test (the control-api's
side has tests of its own): lookups coalesced, requests waiting out a control-api that is not
there yet, and a cancelled job no longer waiting."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from launchdeck.contracts import subjects as s
from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    CachedAnswer,
    GenerationCacheReply,
    GenerationCacheRequest,
    GenerationClaimReply,
    GenerationClaimRequest,
    GenerationWorkItem,
)
from launchdeck.generator.checkpoint import CheckpointUnavailable, NatsCheckpoint


async def test_concurrent_cache_lookups_go_as_few_requests(nc: Client) -> None:
    """300 lookups at once: two requests (256 + 44 fingerprints), each lookup its own answer."""
    batches: list[int] = []

    async def answer(msg: Msg) -> None:
        request = decode(msg.data, GenerationCacheRequest)
        batches.append(len(request.fingerprints))
        hits = {f: CachedAnswer(content=f"for {f}") for f in request.fingerprints if "odd" in f}
        await msg.respond(encode(GenerationCacheReply(hits=hits)))

    sub = await nc.subscribe(s.SUBJECT_GENERATION_CACHE, cb=answer)
    try:
        checkpoint = NatsCheckpoint(nc, str(uuid.uuid4()))
        keys = [f"{'odd' if i % 2 else 'even'}-{i}" for i in range(300)]
        found = await asyncio.gather(*(checkpoint.cache_lookup(k) for k in keys))
    finally:
        await sub.unsubscribe()
    assert sorted(batches) == [44, 256]
    for key, hit in zip(keys, found, strict=True):
        assert hit == (CachedAnswer(content=f"for {key}") if "odd" in key else None)


async def test_a_request_waits_for_the_control_api_to_answer(nc: Client) -> None:
    """Nobody subscribed yet (a control-api restarting): the claim is retried until one answers."""
    job_id = str(uuid.uuid4())
    checkpoint = NatsCheckpoint(nc, job_id, timeout_s=0.5)
    claim = asyncio.create_task(checkpoint.claim(-1, 256))

    async def answer(msg: Msg) -> None:
        request = decode(msg.data, GenerationClaimRequest)
        if request.job_id == job_id:
            item = GenerationWorkItem(index=0, variables={"a": 1})
            await msg.respond(encode(GenerationClaimReply(items=[item], status="running")))

    sub = await nc.subscribe(s.SUBJECT_GENERATION_CLAIM, cb=answer)
    try:
        reply = await asyncio.wait_for(claim, 15)
    finally:
        await sub.unsubscribe()
    assert reply.items == [GenerationWorkItem(index=0, variables={"a": 1})]


async def test_a_cancelled_job_stops_waiting_for_an_answer(nc: Client) -> None:
    """With the job cancelled, a request nobody answers gives up instead of waiting forever."""
    cancelled = asyncio.Event()
    checkpoint = NatsCheckpoint(nc, str(uuid.uuid4()), give_up=cancelled, timeout_s=0.2)
    cancelled.set()
    with pytest.raises(CheckpointUnavailable):
        await asyncio.wait_for(checkpoint.claim(-1, 256), 10)
