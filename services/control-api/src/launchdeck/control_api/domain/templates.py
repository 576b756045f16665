"""Prompt templates: checking steps before a version is stored, numbering versions, and the
dry run. Rendering and the checks themselves are `launchdeck.libs.prompts`, shared with the
generator, so what passes here renders the same way in a job."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import msgspec

from launchdeck.contracts.api import SLUG_PATTERN, TemplateCreate, TemplateStep, TemplateUpdate
from launchdeck.control_api.domain.errors import Conflict, FieldError, Invalid, NotFound
from launchdeck.control_api.domain.projects import parse_uuid
from launchdeck.control_api.store import templates as store
from launchdeck.control_api.store.templates import TemplateVersion
from launchdeck.libs import prompts

_NAME = re.compile(SLUG_PATTERN)


def step_of(step: TemplateStep) -> prompts.Step:
    return prompts.Step(name=step.name, prompt=step.prompt, output=step.output, schema=step.schema)


def steps_of(version: TemplateVersion) -> list[TemplateStep]:
    return msgspec.convert(version.steps, list[TemplateStep])


def check_steps(steps: list[TemplateStep]) -> None:
    """Invalid naming every bad field (`steps[i].prompt` with the line, `steps[i].schema`, …)."""
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, step in enumerate(steps):
        at = f"steps[{i}]"
        if step.name in seen:
            errors.append(FieldError(f"{at}.name", f"another step is named {step.name!r}"))
        seen.add(step.name)
        # Postgres stores no NUL in jsonb text (prompts are kept from it by their type).
        if step.schema is not None and _holds_nul(step.schema):
            errors.append(FieldError(f"{at}.schema", _NO_NUL))
        for error in prompts.check_syntax(step.name, step.prompt):
            line = f"line {error.line}: " if error.line else ""
            errors.append(FieldError(f"{at}.prompt", f"{line}{error.message}"))
        if step.output == "json":
            if step.schema is None:
                errors.append(FieldError(f"{at}.schema", "is required for a json step"))
            else:
                errors.extend(
                    FieldError(f"{at}.schema", m) for m in prompts.check_schema(step.schema)
                )
        elif step.schema is not None:
            errors.append(FieldError(f"{at}.schema", "only a json step takes a schema"))
    if errors:
        first = errors[0]
        raise Invalid(f"{first.field}: {first.message}", errors)


_NO_NUL = "must not contain the NUL character (\\u0000)"


def _holds_nul(value: Any) -> bool:
    """Whether a JSON value has a NUL in any string or key (iterative: any depth)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _stored(steps: list[TemplateStep]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(s) for s in steps]


async def create_template(
    conn: Any, request: TemplateCreate, *, created_by: str | None
) -> TemplateVersion:
    check_steps(request.steps)
    template_id = uuid.uuid4()
    try:
        async with conn.transaction():
            await store.insert_template(conn, template_id=template_id, name=request.name)
            await store.insert_version(
                conn, template_id=template_id, steps=_stored(request.steps), created_by=created_by
            )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a template named {request.name!r} exists already") from None
    return await _get(conn, template_id, None)


async def add_version(
    conn: Any, template: TemplateVersion, request: TemplateUpdate, *, created_by: str | None
) -> TemplateVersion:
    """Version n+1 of `template` (versions are never changed)."""
    if request.name is not msgspec.UNSET and request.name != template.name:
        raise Invalid.field("name", f"a template's name does not change (it is {template.name!r})")
    check_steps(request.steps)
    async with conn.transaction():
        if not await store.lock(conn, template.id):
            raise NotFound(f"no template {template.name!r}")
        version = await store.insert_version(
            conn, template_id=template.id, steps=_stored(request.steps), created_by=created_by
        )
    return await _get(conn, template.id, version)


async def _get(conn: Any, template_id: uuid.UUID, version: int | None) -> TemplateVersion:
    found = await store.get(conn, template_id=template_id, name=None, version=version)
    assert found is not None  # just written in this connection
    return found


async def find_template(conn: Any, id_or_name: str, version: int | None) -> TemplateVersion:
    """The template whose id or name is `id_or_name`, at `version` (None: the latest)."""
    template_id = parse_uuid(id_or_name)
    if template_id is None and not _NAME.fullmatch(id_or_name):
        # No id and no name of ours (a NUL would not even reach Postgres).
        raise NotFound(f"no template {id_or_name!r}")
    name = None if template_id is not None else id_or_name
    found = await store.get(conn, template_id=template_id, name=name, version=version)
    if found is not None:
        return found
    if version is not None and await store.get(
        conn, template_id=template_id, name=name, version=None
    ):
        raise NotFound(f"template {id_or_name!r} has no version {version}")
    raise NotFound(f"no template {id_or_name!r}")


def dry_run(template: TemplateVersion, variables: dict[str, Any]) -> list[prompts.RenderedStep]:
    """Every step's prompt for one item, earlier outputs as placeholders; Invalid naming the
    step, the line and the problem (an undefined variable: `'city' is undefined`)."""
    steps = steps_of(template)
    for name in sorted(prompts.RESERVED_VARIABLES & set(variables)):
        raise Invalid.field(f"variables.{name}", "is reserved (earlier steps' outputs)")
    try:
        return prompts.render_steps([step_of(s) for s in steps], variables)
    except prompts.RenderError as exc:
        index = next(i for i, s in enumerate(steps) if s.name == exc.error.step)
        field = f"steps[{index}].prompt"
        raise Invalid(str(exc.error), [FieldError(field, str(exc.error))]) from None
