"""The control-api's generation checkpoint server (`ld.rpc.generation.*`) run in a test as the
platform runs it — logged in as the control-api's NATS user, so the permission table is part
of what is tested — and generation jobs written straight into its database (the rows the
generations API would write), for tests of either side of the checkpoint."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import msgspec

from launchdeck.contracts.api import GenerationLimits, GenerationModel, GenerationParameters
from launchdeck.control_api.consumers.generation_rpc import GenerationRpcServer
from launchdeck.control_api.domain.sealing import KeyRing
from tests.env_rpc import serving_as_control_api

STEPS: list[dict[str, Any]] = [
    {"name": "outline", "prompt": "Outline {{ service }} in {{ area }}", "output": "json",
     "schema": {"type": "object"}},
    {"name": "page", "prompt": "Write {{ steps.outline.output }}", "output": "text",
     "schema": None},
]  # fmt: skip
DEFAULT_PARAMETERS = GenerationParameters()
DEFAULT_LIMITS = GenerationLimits()


@contextlib.asynccontextmanager
async def generation_server(
    pool: asyncpg.Pool, nats_url: str, keyring: KeyRing
) -> AsyncIterator[GenerationRpcServer]:
    """The real `GenerationRpcServer` over `pool` (`serving_as_control_api`); `keyring` opens
    the env var of a job's API key."""
    make = partial(GenerationRpcServer, pool, keyring=keyring)
    async with serving_as_control_api(nats_url, make, "generation RPC server") as server:
        yield server


async def insert_job(
    pool: asyncpg.Pool,
    project_id: uuid.UUID,
    items: list[dict[str, Any]],
    *,
    model: GenerationModel | None = None,
    parameters: GenerationParameters = DEFAULT_PARAMETERS,
    limits: GenerationLimits = DEFAULT_LIMITS,
    prices: tuple[str, str] = ("0", "0"),
    budget_usd: str | None = None,
    budget_tokens: int | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> uuid.UUID:
    """A queued job of project `project_id` over `items` (index = position) with a fresh
    template whose version 1 has `steps` (default `STEPS`), written as the generations API
    stores one; its id."""
    template_id, job_id = uuid.uuid4(), uuid.uuid4()
    model = model or GenerationModel(provider="ollama", name="llama3.2")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO templates (id, name) VALUES ($1, $2)",
            template_id,
            f"pages-{template_id.hex[:10]}",
        )
        await conn.execute(
            "INSERT INTO template_versions (template_id, version, steps) VALUES ($1, 1, $2)",
            template_id,
            STEPS if steps is None else steps,
        )
        await conn.execute(
            """INSERT INTO generation_jobs (id, project_id, template_id, template_version,
                   model, parameters, limits, price_input_per_mtok, price_output_per_mtok,
                   budget_usd, budget_tokens, variable_names, total)
               VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
            job_id,
            project_id,
            template_id,
            msgspec.to_builtins(model),
            msgspec.to_builtins(parameters),
            msgspec.to_builtins(limits),
            Decimal(prices[0]),
            Decimal(prices[1]),
            None if budget_usd is None else Decimal(budget_usd),
            budget_tokens,
            sorted({name for item in items for name in item}),
            len(items),
        )
        await conn.executemany(
            "INSERT INTO generation_items (job_id, idx, variables) VALUES ($1, $2, $3)",
            [(job_id, i, item) for i, item in enumerate(items)],
        )
    return job_id
