"""Generator fixtures: the fake LLM server (tests/fake_llm.py), one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fake_llm import FakeLLM, running_fake_llm


@pytest_asyncio.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with running_fake_llm() as fake:
        yield fake
