"""A generation job's results as files: JSONL, CSV, Parquet, and the per-group manifests (a zip
of them, or one), streamed from the store's cursor through `libs.exports`.

Every function returns an async iterator of byte chunks for the caller to write as they come;
none holds more than a cursor chunk of rows plus what `libs.exports` keeps (a Parquet row group,
one group's manifest). Groups and their slugs are those of `libs.exports.ItemGrouper`: a
group's slug is the one its manifest has in the zip, and the one `manifest_chunks` is asked by;
items whose group value is empty or missing are in the group `ungrouped`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import msgspec

from launchdeck.contracts.statuses import GenerationItemStatus
from launchdeck.control_api.domain.errors import Invalid, NotFound
from launchdeck.control_api.store import generation_results as store
from launchdeck.control_api.store.generation_results import ItemOrder, ResultsJob
from launchdeck.libs import exports
from launchdeck.libs.exports import ExportFormat, ExportItem, ManifestJob
from launchdeck.libs.slugs import UniqueSlugs

ITEM_STATUSES: tuple[GenerationItemStatus, ...] = ("pending", "done", "failed")
# What each format is served as (NDJSON's registered name, as the API's other streams).
MEDIA_TYPES: dict[str, str] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "zip": "application/zip",
    "json": "application/json",
}


@dataclass(frozen=True)
class ExportRequest:
    format: ExportFormat
    status: GenerationItemStatus | None


def parse_export_request(query: dict[str, str]) -> ExportRequest:
    """`?format=` (required: jsonl, csv or parquet) and `?status=` (optional); Invalid naming
    the field otherwise."""
    fmt = query.get("format", "")
    if fmt not in exports.EXPORT_FORMATS:
        choices = ", ".join(exports.EXPORT_FORMATS)
        raise Invalid.field("format", f"must be one of {choices}, not {fmt!r}")
    status = query.get("status") or None
    if status is not None and status not in ITEM_STATUSES:
        raise Invalid.field("status", f"must be one of {', '.join(ITEM_STATUSES)}")
    return ExportRequest(format=fmt, status=status)


def step_names(job: ResultsJob) -> list[str]:
    """The template's steps in order: the `outputs.<step>` columns."""
    return [str(step["name"]) for step in job.steps]


def step_output(job: ResultsJob, step: str) -> str | None:
    """`text` or `json` for a step of the job's template; None when it has no such step."""
    for candidate in job.steps:
        if candidate["name"] == step:
            return str(candidate.get("output") or "text")
    return None


def manifest_job(job: ResultsJob) -> ManifestJob:
    return ManifestJob(
        id=str(job.id),
        template=job.template_name,
        template_version=job.template_version,
        provider=str(job.model.get("provider", "")),
        model=str(job.model.get("name", "")),
        group_by=job.group_by,
    )


def in_order(variables: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """`variables` in the job's order (jsonb keeps its keys sorted its own way), so an item's
    slug (`exports.item_label`) and its JSONL read as the job was given."""
    ordered = {name: variables[name] for name in names if name in variables}
    ordered.update((name, value) for name, value in variables.items() if name not in ordered)
    return ordered


def export_item(row: Any, variable_names: Sequence[str]) -> ExportItem:
    """An item row as `libs.exports` takes it."""
    return ExportItem(
        index=row["idx"],
        status=row["status"],
        group=row["grp"],
        variables=in_order(row["variables"], variable_names),
        outputs=row["outputs"] or {},
        error=row["error"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        cost_usd=float(row["cost_usd"]),
        cached=row["cached"],
    )


async def read_items(
    conn: Any,
    job: ResultsJob,
    *,
    order: ItemOrder,
    status: str | None = None,
    group: tuple[str | None] | None = None,
    chunk_rows: int = store.CHUNK_ROWS,
) -> AsyncIterator[ExportItem]:
    """The job's items from the store's cursor, one at a time (a chunk of rows read ahead)."""
    chunks = store.item_chunks(
        conn, job.id, order=order, status=status, group=group, chunk_rows=chunk_rows
    )
    async with aclosing(chunks):
        async for rows in chunks:
            for row in rows:
                yield export_item(row, job.variable_names)


def export_chunks(
    conn: Any, job: ResultsJob, request: ExportRequest, *, chunk_rows: int = store.CHUNK_ROWS
) -> AsyncGenerator[bytes, None]:
    """The export file, in chunks, items by index."""
    items = read_items(conn, job, order="index", status=request.status, chunk_rows=chunk_rows)
    variables, steps = job.variable_names, step_names(job)
    if request.format == "jsonl":
        return exports.export_jsonl(items)
    if request.format == "csv":
        return exports.export_csv(items, variables=variables, steps=steps)
    return exports.export_parquet(items, variables=variables, steps=steps)


def manifests_zip_chunks(conn: Any, job: ResultsJob) -> AsyncGenerator[bytes, None]:
    """The zip of every group's `manifest.json` and each item's outputs
    (`<group>/<item>/<step>.md|.json`), items read group by group."""
    items = read_items(conn, job, order="group")
    return exports.manifests_zip(items, job.group_by, job=manifest_job(job))


def group_slugs(values: Sequence[str | None]) -> dict[str, str | None]:
    """Slug → stored group value, handed out as `ItemGrouper` does for items read by group:
    the values in that order, each as `exports.group_value` sees it (NULL as "")."""
    slugs = UniqueSlugs()
    found: dict[str, str | None] = {}
    seen: set[str] = set()
    for value in values:
        text = value if value is not None else ""
        if text in seen:  # NULL and "" are one group to the grouper
            continue
        seen.add(text)
        found[slugs.take(text, fallback=exports.UNGROUPED_SLUG)] = value
    return found


async def manifest_chunks(conn: Any, job: ResultsJob, group: str) -> AsyncGenerator[bytes, None]:
    """One group's `manifest.json`, by its slug (as in the zip); NotFound for a group the job
    does not have (any group of a job without `group_by`). Raises before the first chunk."""
    if job.group_by is None:
        raise NotFound(
            f"generation {job.id} has no group_by: its one manifest is manifest.json in "
            "manifests.zip"
        )
    by_slug = group_slugs(await store.group_values(conn, job.id))
    if group not in by_slug:
        raise NotFound(f"generation {job.id} has no group {group!r}")
    value = by_slug[group]
    return _one_manifest(conn, job, value, group)


async def _one_manifest(
    conn: Any, job: ResultsJob, value: str | None, slug: str
) -> AsyncGenerator[bytes, None]:
    items = read_items(conn, job, order="group", group=(value,))
    if value == "":  # "" and NULL are one group (see group_slugs): both parts, "" first
        rest = read_items(conn, job, order="group", group=(None,))
        items = _chain(items, rest)
    async for manifest in exports.group_manifests(items, job.group_by, job=manifest_job(job)):
        # Its slug within the job (UniqueSlugs numbers repeats across groups), not the one a
        # grouper that saw this group alone would hand out.
        yield _with_slug(manifest, slug).content()


async def _chain(*parts: AsyncIterator[ExportItem]) -> AsyncIterator[ExportItem]:
    for part in parts:
        async for item in part:
            yield item


def _with_slug(manifest: exports.GroupManifest, slug: str) -> exports.GroupManifest:
    if manifest.slug == slug:
        return manifest
    return msgspec.structs.replace(manifest, slug=slug, path=f"{slug}/manifest.json")
