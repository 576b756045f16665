"""The generator's checkpoint, kept by the control-api: what the generator may ask of a job
(`ld.rpc.generation.*`, served by `consumers.generation_rpc`) and the rules its answers keep.

Why the control-api answers and the generator holds no database credentials: docs/architecture.md,
"Generation jobs: the checkpoint through the control-api". The rules:

- **Idempotent settle.** A result is stored only in an item still `pending`, and only the items
  a settle actually changed are added to the job's totals — a settle redelivered (its reply
  lost, the generator restarted) changes nothing, so no item is counted or paid twice.
- **Paid is paid.** Results for a job cancelled or otherwise finished meanwhile are stored all
  the same: those calls were made and cost money.
- **One end.** `finish` ends only a queued or running job; one already finished (cancelled
  through the API meanwhile) keeps its status. The end is announced once, through the outbox,
  in the transaction that made it.
- **The API key** (the production value of the job's `model.api_key_env` variable) leaves only
  in the answer to `start`, to the generator's own inbox; it is never logged or stored elsewhere.

Each function returns the reply to send; `Refused` is a request answered with its `error`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from launchdeck.contracts.api import GenerationLimits, GenerationModel, GenerationParameters
from launchdeck.contracts.messages import (
    CachedAnswer,
    GenerationCacheReply,
    GenerationCacheRequest,
    GenerationClaimReply,
    GenerationClaimRequest,
    GenerationFinishReply,
    GenerationFinishRequest,
    GenerationItemResult,
    GenerationJobSpec,
    GenerationSettleReply,
    GenerationSettleRequest,
    GenerationStartReply,
    GenerationStartRequest,
    GenerationStepSpec,
    GenerationTotals,
    GenerationWorkItem,
)
from launchdeck.contracts.statuses import GENERATION_ACTIVE, GENERATION_FINISHED, GenerationStatus
from launchdeck.contracts.subjects import generation_event_subject
from launchdeck.control_api.domain.env_vars import open_value
from launchdeck.control_api.domain.generations import progress_of
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.domain.sealing import KeyRing, UnreadableSecret
from launchdeck.control_api.store import generation_checkpoint as store
from launchdeck.libs import outbox
from launchdeck.libs.generation.pricing import usd_text

# The only service answered (its NATS user, known by the reply inbox): whoever else asks —
# another service's leaked credentials, an operator's `nats req` — gets no job, key or item.
ASKER = "generator"
# Items per claim, results per settle, fingerprints per cache lookup.
MAX_BATCH = 1000
INT4_MAX = 2**31 - 1
MAX_FINGERPRINT_CHARS = 256  # a btree key has to fit in an index page
MAX_ERROR_CHARS = 4000
# numeric(20, 6): below 10^14 USD.
MAX_COST = Decimal(10) ** 14
_NUL = "\x00"
_REPLACEMENT = "\ufffd"  # Postgres stores no NUL in text or jsonb; model output may hold one


class Refused(Exception):
    """A request answered with `error` (this message): a bad request, an unknown job, an asker
    that is not the generator. Never a value of a secret."""


def check_asker(asker: str | None) -> None:
    if asker != ASKER:
        raise Refused(
            f"ld.rpc.generation.* is answered to the {ASKER} only, and this answer would go to "
            f"{asker or 'an inbox of no platform service'}"
        )


# --- start ------------------------------------------------------------------------------------


async def start(
    conn: Any, keyring: KeyRing, request: GenerationStartRequest
) -> GenerationStartReply:
    """The job for the generator that took it (a queued job becomes running), with its API key.
    A missing key variable is answered with the job and `error`: the generator fails the job
    with that reason rather than calling a provider without credentials."""
    job_id = _job_id(request.job_id)
    _in_range("attempt", request.attempt, 1, INT4_MAX)
    async with conn.transaction():
        taken = await store.start(conn, job_id, request.attempt)
    if taken is None:
        raise Refused(f"no generation job {request.job_id}")
    job, stored_steps = taken
    try:
        model = msgspec.convert(job.model, GenerationModel)
        parameters = msgspec.convert(job.parameters, GenerationParameters)
        limits = msgspec.convert(job.limits, GenerationLimits)
        steps = msgspec.convert(stored_steps, list[GenerationStepSpec])
    except msgspec.ValidationError as exc:
        raise Refused(f"generation job {job_id} is stored unreadably: {exc}") from None
    spec = GenerationJobSpec(
        job_id=str(job.id),
        project_id=str(job.project_id),
        status=_status(job.status),
        template_name=job.template_name,
        template_version=job.template_version,
        steps=steps,
        provider=model.provider,
        model=model.name,
        base_url=model.base_url,
        options=model.options,
        temperature=parameters.temperature,
        max_tokens=parameters.max_tokens,
        seed=parameters.seed,
        concurrency=limits.concurrency,
        requests_per_minute=limits.requests_per_minute,
        budget_usd=None if job.budget_usd is None else usd_text(job.budget_usd),
        budget_tokens=job.budget_tokens,
        price_input_per_mtok=usd_text(job.price_input_per_mtok),
        price_output_per_mtok=usd_text(job.price_output_per_mtok),
        cache=job.cache,
        total=job.total,
        done=job.done,
        failed=job.failed,
        tokens_in=job.tokens_in,
        tokens_out=job.tokens_out,
        cost_usd=usd_text(job.cost_usd),
    )
    if model.api_key_env is None or spec.status not in GENERATION_ACTIVE:
        return GenerationStartReply(job=spec)  # a finished job is dropped: no key for it
    try:
        key = await _api_key(conn, keyring, job.project_id, model.api_key_env)
    except Refused as exc:
        return GenerationStartReply(job=spec, error=str(exc))
    return GenerationStartReply(job=spec, api_key=key)


async def _api_key(conn: Any, keyring: KeyRing, project_id: uuid.UUID, name: str) -> str:
    var = await store.env_var(conn, project_id, name)
    if var is None:
        raise Refused(f"the project has no env var {name} (model.api_key_env)")
    if "production" not in var.targets:
        raise Refused(
            f"the project's env var {name} (model.api_key_env) is not given to production: "
            "a job uses its production value"
        )
    try:
        return open_value(keyring, var)
    except UnreadableSecret as exc:
        raise Refused(f"{exc} (model.api_key_env)") from None


# --- claim ------------------------------------------------------------------------------------


async def claim(conn: Any, request: GenerationClaimRequest) -> GenerationClaimReply:
    """The next pending items after `after_index`, and the job's status. A finished job gives
    no items (nothing more is to be called for it)."""
    job_id = _job_id(request.job_id)
    _in_range("limit", request.limit, 1, MAX_BATCH)
    _in_range("after_index", request.after_index, -1, INT4_MAX)
    status = await store.job_status(conn, job_id)
    if status is None:
        raise Refused(f"no generation job {request.job_id}")
    if status not in GENERATION_ACTIVE:
        return GenerationClaimReply(status=_status(status))
    items = await store.pending_items(
        conn, job_id, after_index=request.after_index, limit=request.limit
    )
    return GenerationClaimReply(
        items=[GenerationWorkItem(index=i, variables=v) for i, v in items],
        status=_status(status),
    )


# --- settle -----------------------------------------------------------------------------------


async def settle(conn: Any, request: GenerationSettleRequest) -> GenerationSettleReply:
    """Store the results of items still pending, add exactly those to the totals and the
    answers of the calls made to the response cache — one transaction, whatever the job's
    status now."""
    job_id = _job_id(request.job_id)
    if len(request.results) > MAX_BATCH:
        raise Refused(f"at most {MAX_BATCH} results per settle, not {len(request.results)}")
    results, answers = _columns(request.results)
    async with conn.transaction():
        # The job's row first: one settle (or finish) of a job at a time.
        if not await store.lock_job(conn, job_id):
            raise Refused(f"no generation job {request.job_id}")
        totals = await store.settle_items(conn, job_id, results)
        await store.store_answers(conn, answers)
    if totals is None:  # deleted between the lock and the update: cannot be, but say so
        raise Refused(f"no generation job {request.job_id}")
    return GenerationSettleReply(totals=_totals(totals))


def _columns(results: list[GenerationItemResult]) -> tuple[store.ItemResults, store.Answers]:
    """The results as the columns the settle statement unnests (each index once: the first
    result given for it), and the calls actually made that have a fingerprint."""
    items = store.ItemResults()
    answers = store.Answers()
    seen: set[int] = set()
    fingerprints: set[str] = set()
    for n, result in enumerate(results):
        at = f"results[{n}]"
        _in_range(f"{at}.index", result.index, 0, INT4_MAX)
        for name in ("tokens_in", "tokens_out", "attempts"):
            _in_range(f"{at}.{name}", getattr(result, name), 0, INT4_MAX)
        cost = _cost(f"{at}.cost_usd", result.cost_usd)
        for m, call in enumerate(result.calls):
            _in_range(f"{at}.calls[{m}].tokens_in", call.tokens_in, 0, INT4_MAX)
            _in_range(f"{at}.calls[{m}].tokens_out", call.tokens_out, 0, INT4_MAX)
            fingerprint = call.fingerprint
            if fingerprint is None or call.cached:
                continue
            if not fingerprint or len(fingerprint) > MAX_FINGERPRINT_CHARS:
                raise Refused(
                    f"{at}.calls[{m}].fingerprint must have 1 to {MAX_FINGERPRINT_CHARS} characters"
                )
            if fingerprint in fingerprints:
                continue
            fingerprints.add(fingerprint)
            answers.fingerprint.append(_text(fingerprint))
            answers.content.append(_text(call.content))
            answers.tokens_in.append(call.tokens_in)
            answers.tokens_out.append(call.tokens_out)
        if result.index in seen:
            continue
        seen.add(result.index)
        items.index.append(result.index)
        items.status.append(result.status)
        items.outputs.append(_json_text(result.outputs))
        items.error.append(_error(result.error))
        items.tokens_in.append(result.tokens_in)
        items.tokens_out.append(result.tokens_out)
        items.cost_usd.append(cost)
        items.cached.append(result.cached)
        items.attempts.append(result.attempts)
    return items, answers


def _cost(field: str, value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise Refused(f"{field} must be a decimal string, not {value!r}") from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_COST:
        raise Refused(f"{field} must be a finite amount from 0 to below 10^14, not {value!r}")
    return amount


def _json_text(value: Any) -> str:
    """`value` as JSON text for a jsonb column, NUL characters replaced (jsonb refuses them)."""
    text = msgspec.json.encode(value).decode()
    if "\\u0000" in text:
        text = msgspec.json.encode(_without_nul(value)).decode()
    return text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _text(value: str) -> str:
    return value.replace(_NUL, _REPLACEMENT) if _NUL in value else value


def _error(error: str | None) -> str | None:
    if error is None:
        return None
    error = _text(error)
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


# --- the response cache -----------------------------------------------------------------------


async def cache(conn: Any, request: GenerationCacheRequest) -> GenerationCacheReply:
    """The stored answers among `fingerprints` (those without one are simply not in `hits`)."""
    if len(request.fingerprints) > MAX_BATCH:
        raise Refused(
            f"at most {MAX_BATCH} fingerprints per lookup, not {len(request.fingerprints)}"
        )
    wanted = sorted({_text(f) for f in request.fingerprints})
    entries = await store.cached_answers(conn, wanted) if wanted else []
    return GenerationCacheReply(
        hits={
            e.fingerprint: CachedAnswer(
                content=e.content, tokens_in=e.tokens_in, tokens_out=e.tokens_out
            )
            for e in entries
        }
    )


# --- finish -----------------------------------------------------------------------------------


async def finish(conn: Any, request: GenerationFinishRequest) -> GenerationFinishReply:
    """End the job as `status` if it is still queued or running, and announce its end (a final
    `GenerationProgress`) through the outbox in the same transaction; a job already finished
    keeps its status. Either way, the totals as they are now. `succeeded` says every item
    finished: a job with items still pending cannot end so (a resume would never come back
    for them)."""
    job_id = _job_id(request.job_id)
    if request.status not in GENERATION_FINISHED:
        ends = ", ".join(sorted(GENERATION_FINISHED))
        raise Refused(f"a job finishes as one of {ends}, not {request.status}")
    async with conn.transaction():
        ended = None
        if request.status != "succeeded" or not await store.has_pending(conn, job_id):
            error = _error(request.error)
            ended = await store.finish(conn, job_id, status=request.status, error=error)
        if ended is None:
            current = await store.totals(conn, job_id)
            if current is None:
                raise Refused(f"no generation job {request.job_id}")
            if current.status in GENERATION_ACTIVE:
                raise Refused(f"generation job {job_id} has pending items: it cannot succeed")
            return GenerationFinishReply(totals=_totals(current))
        await outbox.enqueue(
            conn,
            generation_event_subject(str(job_id)),
            progress_of(job_id, ended, at=datetime.now(UTC)),
        )
    return GenerationFinishReply(totals=_totals(ended))


# --- shared -----------------------------------------------------------------------------------


def _job_id(value: str) -> uuid.UUID:
    job_id = parse_uuid(value)
    if job_id is None:
        raise Refused(f"no generation job {value}")
    return job_id


def _in_range(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise Refused(f"{field} must be from {low} to {high}, not {value}")


_STATUSES: dict[str, GenerationStatus] = {s: s for s in GENERATION_ACTIVE | GENERATION_FINISHED}


def _status(value: str) -> GenerationStatus:
    """A status as stored (the table's CHECK keeps it one of `GenerationStatus`)."""
    return _STATUSES[value]


def _totals(totals: store.JobTotals) -> GenerationTotals:
    return GenerationTotals(
        status=_status(totals.status),
        total=totals.total,
        done=totals.done,
        failed=totals.failed,
        tokens_in=totals.tokens_in,
        tokens_out=totals.tokens_out,
        cost_usd=usd_text(totals.cost_usd),
        error=totals.error,
    )
