"""A job's checkpoint kept in memory, for the executor's tests: the same rules as the
control-api's (claim pending items above an index in order; settle idempotently, adding to the
totals and storing cacheable answers; a finished job keeps its status), without Postgres.
This is the logic under test's counterpart, not a mock of NATS."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from launchdeck.contracts.messages import (
    CachedAnswer,
    GenerationClaimReply,
    GenerationFinishReply,
    GenerationItemResult,
    GenerationJobSpec,
    GenerationSettleReply,
    GenerationStartReply,
    GenerationStepSpec,
    GenerationTotals,
    GenerationWorkItem,
)
from launchdeck.contracts.statuses import GENERATION_FINISHED, GenerationStatus


def make_spec(**fields: Any) -> GenerationJobSpec:
    base: dict[str, Any] = {
        "job_id": "job-1",
        "project_id": "p-1",
        "status": "running",
        "template_name": "t",
        "template_version": 1,
        "steps": [GenerationStepSpec(name="page", prompt="Write about {{ topic }}")],
        "provider": "ollama",
        "model": "llama3",
        "concurrency": 4,
    }
    base.update(fields)
    return GenerationJobSpec(**base)


class MemoryCheckpoint:
    def __init__(
        self,
        spec: GenerationJobSpec,
        items: Sequence[dict[str, Any]],
        cache: dict[str, CachedAnswer] | None = None,
    ) -> None:
        self.spec = msgspec.structs.replace(spec, total=len(items))
        self.items = list(items)
        self.cache: dict[str, CachedAnswer] = {} if cache is None else cache
        self.results: dict[int, GenerationItemResult] = {}
        self.status: GenerationStatus = spec.status
        self.error: str | None = None
        self.settle_batches: list[int] = []
        self.claims = 0
        self.lookups = 0

    def totals(self) -> GenerationTotals:
        results = self.results.values()
        return GenerationTotals(
            status=self.status,
            total=len(self.items),
            done=sum(r.status == "done" for r in results),
            failed=sum(r.status == "failed" for r in results),
            tokens_in=sum(r.tokens_in for r in results),
            tokens_out=sum(r.tokens_out for r in results),
            cost_usd=str(sum((Decimal(r.cost_usd) for r in results), Decimal(0))),
            error=self.error,
        )

    def resumed_spec(self) -> GenerationJobSpec:
        """The spec a start reply would carry now (totals so far)."""
        t = self.totals()
        return msgspec.structs.replace(
            self.spec,
            status=self.status,
            done=t.done,
            failed=t.failed,
            tokens_in=t.tokens_in,
            tokens_out=t.tokens_out,
            cost_usd=t.cost_usd,
        )

    @property
    def pending(self) -> list[int]:
        return [i for i in range(len(self.items)) if i not in self.results]

    def cancel(self) -> None:
        self.status = "cancelled"

    async def start(self, attempt: int) -> GenerationStartReply:
        return GenerationStartReply(job=self.resumed_spec())

    async def claim(self, after_index: int, limit: int) -> GenerationClaimReply:
        self.claims += 1
        indexes = [i for i in self.pending if i > after_index][:limit]
        items = [GenerationWorkItem(index=i, variables=self.items[i]) for i in indexes]
        return GenerationClaimReply(items=items, status=self.status)

    async def settle(self, results: Sequence[GenerationItemResult]) -> GenerationSettleReply:
        self.settle_batches.append(len(results))
        for result in results:
            if result.index in self.results:
                continue
            self.results[result.index] = result
            for call in result.calls:
                if call.fingerprint is not None and not call.cached:
                    self.cache.setdefault(
                        call.fingerprint,
                        CachedAnswer(
                            content=call.content,
                            tokens_in=call.tokens_in,
                            tokens_out=call.tokens_out,
                        ),
                    )
        return GenerationSettleReply(totals=self.totals())

    async def cache_lookup(self, fingerprint: str) -> CachedAnswer | None:
        self.lookups += 1
        return self.cache.get(fingerprint)

    async def finish(self, status: GenerationStatus, error: str | None) -> GenerationFinishReply:
        if self.status not in GENERATION_FINISHED:
            self.status, self.error = status, error
        return GenerationFinishReply(totals=self.totals())
