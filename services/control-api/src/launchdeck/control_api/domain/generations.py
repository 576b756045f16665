"""Generation jobs as the HTTP API (and the scheduler) start them: checking a job request,
expanding its items, pinning its template version and price, storing the job with its items
and its GenerationRequested command in one transaction; the dry run; cancelling.

The rules themselves are shared with the generator (`launchdeck.libs.generation`: variables
and pricing; `launchdeck.libs.prompts`: rendering), so a dry run renders what a job will.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from launchdeck.contracts.api import (
    GenerationCreate,
    GenerationEstimate,
    GenerationPromptOut,
    RenderedStepOut,
)
from launchdeck.contracts.messages import GenerationProgress, GenerationRequested
from launchdeck.contracts.statuses import GENERATION_FINISHED
from launchdeck.contracts.subjects import SUBJECT_GENERATION_JOBS, generation_event_subject
from launchdeck.control_api.domain.errors import Conflict, FieldError, Invalid, NotFound
from launchdeck.control_api.domain.templates import find_template, step_of, steps_of
from launchdeck.control_api.settings import GenerationSettings
from launchdeck.control_api.store import generations as store
from launchdeck.control_api.store.generations import GenerationJob, NewJob
from launchdeck.control_api.store.records import Project
from launchdeck.control_api.store.templates import TemplateVersion
from launchdeck.libs import outbox, prompts
from launchdeck.libs.generation import pricing, variables
from launchdeck.libs.generation.estimate import item_estimate, outputs_used
from launchdeck.libs.generation.variables import Expansion, VariablesError

DEFAULT_PROMPTS = 3
MAX_PROMPTS = 50
# The env var target whose value a job's `api_key_env` names (the generator reads it).
API_KEY_TARGET = "production"
# A NUL in any string of an item's JSON (Postgres stores none in jsonb): `\u0000` not itself
# escaped (`\\u0000` is a backslash followed by the text "u0000").
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

_encoder = msgspec.json.Encoder()


def invalid(exc: VariablesError) -> Invalid:
    """A 422 naming the field of the variables or rows that is wrong."""
    return Invalid.field(exc.field, exc.message)


# --- the request, checked ---------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A checked job request: its pinned template version, its items (as stored: JSON and
    group) and its price."""

    template: TemplateVersion
    expansion: Expansion
    price: pricing.Price


def _expand(
    body: GenerationCreate, rows_upload: Expansion | None, settings: GenerationSettings
) -> Expansion:
    """The items, from exactly one source: `variables`, inline `rows`, or an uploaded file."""
    if body.rows is not None and rows_upload is not None:
        raise Invalid.field("rows", "give rows inline or as an uploaded file, not both")
    try:
        variables.check_one_source(
            variables_given=body.variables is not None,
            rows_given=body.rows is not None or rows_upload is not None,
        )
        if rows_upload is not None:
            return rows_upload
        return variables.expand_job(body.variables, body.rows, max_items=settings.max_items)
    except VariablesError as exc:
        raise invalid(exc) from None


async def find_generation_template(conn: Any, body: GenerationCreate) -> TemplateVersion:
    """The template version the job pins (the latest unless `template_version`); a 422 on the
    field that names what does not exist (the route's project does exist)."""
    try:
        return await find_template(conn, body.template, body.template_version)
    except NotFound as exc:
        field = "template_version" if "has no version" in exc.detail else "template"
        raise Invalid.field(field, exc.detail) from None


async def _check_api_key_env(conn: Any, project: Project, body: GenerationCreate) -> None:
    key = body.model.api_key_env
    if key is None:
        return
    targets = await store.env_var_targets(conn, project.id, key)
    if targets is None:
        raise Invalid.field(
            "model.api_key_env", f"the project has no env var {key!r} (set it first)"
        )
    if API_KEY_TARGET not in targets:
        raise Invalid.field(
            "model.api_key_env", f"env var {key!r} is not set for the {API_KEY_TARGET} target"
        )


def _price(body: GenerationCreate, settings: GenerationSettings) -> pricing.Price:
    override = None if body.price is None else msgspec.to_builtins(body.price)
    try:
        return pricing.job_price(settings.prices, body.model.provider, body.model.name, override)
    except pricing.PricingError as exc:  # the type's pattern admits only valid amounts
        raise Invalid.field(exc.field.replace("prices", "price", 1), exc.message) from None


async def plan(
    conn: Any,
    project: Project,
    body: GenerationCreate,
    *,
    rows_upload: Expansion | None,
    settings: GenerationSettings,
) -> Plan:
    """Check a job request (create or dry run) and expand its items."""
    template = await find_generation_template(conn, body)
    await _check_api_key_env(conn, project, body)
    # Off the event loop: a matrix of 100,000 items takes a moment to expand.
    expansion = await asyncio.to_thread(_expand, body, rows_upload, settings)
    if body.group_by is not None and body.group_by not in expansion.names:
        names = ", ".join(expansion.names) or "none"
        raise Invalid.field("group_by", f"must be one of the variables ({names})")
    return Plan(template, expansion, _price(body, settings))


def _group(value: Any) -> str | None:
    """An item's group: its `group_by` value as text (a string as is, else its JSON)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _encoder.encode(value).decode()


_NO_NUL = "must not contain the NUL character (\\u0000)"


def _stored_items(
    expansion: Expansion, group_by: str | None, *, matrix: bool
) -> tuple[list[bytes], list[str | None]]:
    """Each item's variables as JSON and its group; Invalid for an item Postgres cannot store
    (a NUL in a string: `variables` for a matrix, `rows[<index>]` for rows)."""
    docs: list[bytes] = []
    groups: list[str | None] = []
    for index, item in enumerate(expansion.items):
        doc = _encoder.encode(item)
        if b"\\u0000" in doc and _NUL.search(doc):
            raise Invalid.field("variables" if matrix else f"rows[{index}]", _NO_NUL)
        docs.append(doc)
        groups.append(_group(item.get(group_by)) if group_by is not None else None)
    return docs, groups


# --- create ------------------------------------------------------------------------------------


async def create_generation(
    conn: Any,
    project: Project,
    body: GenerationCreate,
    *,
    rows_upload: Expansion | None = None,
    created_by: str | None,
    settings: GenerationSettings,
) -> GenerationJob:
    """Store a `queued` job pinned to its template version, its items (`pending`) and its
    GenerationRequested in one transaction (a savepoint inside the caller's: the scheduler's
    tick). The outbox row id is the job id: the command's Nats-Msg-Id."""
    checked = await plan(conn, project, body, rows_upload=rows_upload, settings=settings)
    docs, groups = await asyncio.to_thread(
        _stored_items, checked.expansion, body.group_by, matrix=body.variables is not None
    )
    limits = body.limits
    job = NewJob(
        id=uuid.uuid4(),
        project_id=project.id,
        template_id=checked.template.id,
        template_version=checked.template.version,
        model=msgspec.to_builtins(body.model),
        parameters=msgspec.to_builtins(body.parameters),
        limits=msgspec.to_builtins(limits),
        price_input_per_mtok=checked.price.input_per_mtok,
        price_output_per_mtok=checked.price.output_per_mtok,
        budget_usd=None if limits.budget_usd is None else Decimal(limits.budget_usd),
        budget_tokens=limits.budget_tokens,
        group_by=body.group_by,
        cache=body.cache,
        variable_names=list(checked.expansion.names),
        total=len(docs),
        created_by=created_by,
    )
    async with conn.transaction():
        await store.insert_job(conn, job)
        await store.insert_items(conn, job.id, docs, groups)
        command = GenerationRequested(
            job_id=str(job.id), project_id=str(project.id), requested_at=datetime.now(UTC)
        )
        await outbox.enqueue(conn, SUBJECT_GENERATION_JOBS, command, msg_id=job.id)
        created = await store.get(conn, job.id)
    assert created is not None  # just written in this transaction
    return created


# --- dry run -----------------------------------------------------------------------------------


def estimate(
    template: TemplateVersion,
    expansion: Expansion,
    *,
    max_tokens: int | None,
    price: pricing.Price,
    prompts_shown: int,
) -> GenerationEstimate:
    """Render every item's steps (earlier outputs as placeholders) and estimate its calls
    with the generator's own rule (`libs.generation.estimate`, what it reserves per item).
    Invalid naming `items[<index>]` (and the step, line and message) for an item that does
    not render: an undefined variable, a failing expression."""
    steps = [step_of(s) for s in steps_of(template)]
    used = outputs_used([(step.name, step.prompt) for step in steps])
    tokens_in = tokens_out = 0
    usd = pricing.ZERO
    shown: list[GenerationPromptOut] = []
    for index, item in enumerate(expansion.items):
        try:
            rendered = prompts.render_steps(steps, item)
        except prompts.RenderError as exc:
            message = str(exc.error)
            raise Invalid(
                f"items[{index}]: {message}", [FieldError(f"items[{index}]", message)]
            ) from None
        item_calls = item_estimate([s.prompt for s in rendered], used, max_tokens, price)
        tokens_in += item_calls.tokens_in
        tokens_out += item_calls.tokens_out
        usd += item_calls.usd
        if index < prompts_shown:
            shown.append(
                GenerationPromptOut(
                    index=index,
                    variables=item,
                    steps=[
                        RenderedStepOut(name=s.name, output=s.output, prompt=s.prompt)
                        for s in rendered
                    ],
                )
            )
    items = len(expansion.items)
    return GenerationEstimate(
        items=items,
        calls=items * len(steps),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_usd=pricing.usd_text(usd),
        prompts=shown,
    )


async def dry_run(
    conn: Any,
    project: Project,
    body: GenerationCreate,
    *,
    rows_upload: Expansion | None = None,
    settings: GenerationSettings,
    prompts_shown: int = DEFAULT_PROMPTS,
) -> GenerationEstimate:
    """What `create_generation` would run, rendered and estimated; nothing is stored."""
    checked = await plan(conn, project, body, rows_upload=rows_upload, settings=settings)
    # In a thread: rendering 100,000 items takes seconds, and the loop serves others meanwhile.
    return await asyncio.to_thread(
        estimate,
        checked.template,
        checked.expansion,
        max_tokens=body.parameters.max_tokens,
        price=checked.price,
        prompts_shown=prompts_shown,
    )


# --- progress and cancel -----------------------------------------------------------------------


class StoredProgress(Protocol):
    """What a stored job says of its progress (a `GenerationJob`, or the checkpoint's totals)."""

    @property
    def project_id(self) -> uuid.UUID: ...
    @property
    def status(self) -> Any: ...
    @property
    def total(self) -> int: ...
    @property
    def done(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def tokens_in(self) -> int: ...
    @property
    def tokens_out(self) -> int: ...
    @property
    def cost_usd(self) -> Decimal: ...
    @property
    def error(self) -> str | None: ...


def progress_of(job_id: uuid.UUID, job: StoredProgress, *, at: datetime) -> GenerationProgress:
    """Where the job stands, as stored (no rate known here: `items_per_s` 0, no ETA)."""
    return GenerationProgress(
        job_id=str(job_id),
        project_id=str(job.project_id),
        status=job.status,
        total=job.total,
        done=job.done,
        failed=job.failed,
        tokens_in=job.tokens_in,
        tokens_out=job.tokens_out,
        cost_usd=pricing.usd_text(job.cost_usd),
        items_per_s=0.0,
        eta_s=None,
        error=job.error,
        at=at,
    )


async def cancel_generation(conn: Any, job_id: uuid.UUID, *, now: datetime) -> GenerationJob:
    """Cancel a queued or running job (Conflict once it has finished): its row says
    `cancelled` at once, and its final progress event goes out through the outbox. The caller
    tells the generators after the commit (`GenerationCancelRequested`): the one running it
    starts no new call; its pending items stay pending."""
    async with conn.transaction():
        job = await store.get(conn, job_id, for_update=True)
        if job is None:
            raise NotFound(f"no generation {str(job_id)!r}")
        if job.status in GENERATION_FINISHED or not await store.cancel(conn, job.id, at=now):
            raise Conflict(f"generation {job.id} has already finished: {job.status}")
        cancelled = await store.get(conn, job.id)
        assert cancelled is not None
        subject = generation_event_subject(str(job.id))
        await outbox.enqueue(conn, subject, progress_of(cancelled.id, cancelled, at=now))
    return cancelled
