"""Streaming exports of a generation job's items: JSONL, CSV, Parquet, per-group manifests and
a zip of them.

Pure logic: items in (an async or plain iterable of `ExportItem`, e.g. rows streamed from
Postgres with a server-side cursor), bytes chunks out, ready to be written to an HTTP response one
at a time. Nothing holds the whole export: JSONL and CSV hold one chunk; Parquet one row group
(`row_group_items` items and their encoded bytes); the zip one item's files plus one group's
manifest (summaries, not outputs) and the zip's central directory (one small record per file).
Every chunk is at most `chunk_bytes` long.

CSV and Parquet have a column per variable (`variables.<name>`, in the job's order) and per step
(`outputs.<step>`): text as it is, any other value (a `json` step's, a number) as JSON text.

CSV cells that start with `=`, `+`, `-`, `@`, tab or carriage return get a leading `'`, so a
spreadsheet shows model output as text instead of running it as a formula (OWASP "CSV
injection"); this also applies to JSON-encoded cells such as a negative number. The numeric
columns Launchdeck itself fills (tokens, cost) are never prefixed.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from launchdeck.libs.slugs import UniqueSlugs

CHUNK_BYTES = 64 * 1024  # one HTTP write; small enough for many exports streaming at once
ROW_GROUP_ITEMS = 1000  # Parquet items per row group: the bound on what a Parquet export holds
PREVIEW_CHARS = 200  # a text output's preview in a manifest
UNGROUPED_SLUG = "ungrouped"  # the directory of items whose group value is empty or missing
# Item statuses as the API names them (`contracts.statuses.GenerationItemStatus`).
COMPLETED = "done"
FAILED = "failed"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ExportFormat = Literal["jsonl", "csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv", "parquet")
MEDIA_TYPES: dict[str, str] = {
    "jsonl": "application/jsonl",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "zip": "application/zip",
}


class ExportError(ValueError):
    """The items cannot be exported as asked (e.g. manifests from items not ordered by group)."""


class ExportItem(msgspec.Struct, kw_only=True, frozen=True):
    """One generated item as exported: its variables, each step's output (text, or the JSON
    value of a `json` step), and what it cost. `group`: its `group_by` value as text, as the
    job stored it (None without `group_by`)."""

    index: int  # position in the job, stable across resumes
    status: str
    group: str | None = None
    variables: dict[str, Any]
    outputs: dict[str, Any]
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    error: str | None = None


ItemSource = AsyncIterable[ExportItem] | Iterable[ExportItem]

_json = msgspec.json.Encoder()


async def each_item(items: ItemSource) -> AsyncIterator[ExportItem]:
    """The items of an async or plain iterable, asynchronously."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class _Chunks:
    """Re-cuts written bytes into chunks of exactly `size` bytes (the last one shorter)."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._buf = bytearray()

    def add(self, data: bytes) -> list[bytes]:
        self._buf += data
        full = len(self._buf) // self.size * self.size
        if not full:
            return []
        with memoryview(self._buf) as view:
            out = [bytes(view[i : i + self.size]) for i in range(0, full, self.size)]
        del self._buf[:full]
        return out

    def rest(self) -> list[bytes]:
        out = [bytes(self._buf)] if self._buf else []
        self._buf.clear()
        return out


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file that the Parquet and zip writers write into and the export
    drains after each row group / file (zipfile then writes in streaming mode, with data
    descriptors, since it cannot seek back)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any, /) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


# --- JSONL -------------------------------------------------------------------------------------


async def export_jsonl(
    items: ItemSource, *, chunk_bytes: int = CHUNK_BYTES
) -> AsyncGenerator[bytes, None]:
    """One JSON object per line, the `ExportItem` fields in order."""
    chunks = _Chunks(chunk_bytes)
    async for item in each_item(items):
        for chunk in chunks.add(_json.encode(item) + b"\n"):
            yield chunk
    for chunk in chunks.rest():
        yield chunk


# --- CSV ---------------------------------------------------------------------------------------


def csv_header(variables: Sequence[str], steps: Sequence[str]) -> list[str]:
    """The CSV columns: the job's variables as `variables.<name>` and its template's steps as
    `outputs.<step>`, so neither can clash with the fixed columns or each other."""
    return [
        "index",
        "status",
        "group",
        *(f"variables.{name}" for name in variables),
        *(f"outputs.{name}" for name in steps),
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "cached",
        "error",
    ]


def guard_formula(text: str) -> str:
    """`text` with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(value: Any) -> str:
    """A user- or model-supplied value as a CSV cell: strings as they are, anything else as
    JSON, missing as empty; guarded against formulas either way."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else _json.encode(value).decode()
    return guard_formula(text)


async def export_csv(
    items: ItemSource,
    *,
    variables: Sequence[str],
    steps: Sequence[str],
    chunk_bytes: int = CHUNK_BYTES,
) -> AsyncGenerator[bytes, None]:
    """RFC 4180 CSV (UTF-8, CRLF, quoted where needed) with `csv_header(variables, steps)`.

    The columns are fixed up front (the job knows its variables and its template's steps): an
    item's variables or outputs not named there are left out; missing ones are empty cells.
    """
    chunks = _Chunks(chunk_bytes)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(csv_header(variables, steps))
    async for item in each_item(items):
        writer.writerow(
            [
                str(item.index),
                _cell(item.status),
                _cell(item.group),
                *(_cell(item.variables.get(name)) for name in variables),
                *(_cell(item.outputs.get(name)) for name in steps),
                str(item.tokens_in),
                str(item.tokens_out),
                _json.encode(item.cost_usd).decode(),
                "true" if item.cached else "false",
                _cell(item.error),
            ]
        )
        for chunk in chunks.add(text.getvalue().encode()):
            yield chunk
        text.seek(0)
        text.truncate()
    for chunk in chunks.add(text.getvalue().encode()) + chunks.rest():
        yield chunk


# --- Parquet -----------------------------------------------------------------------------------

_JSON_COLUMN = {b"launchdeck.encoding": b"json"}


def parquet_schema(variables: Sequence[str], steps: Sequence[str]) -> pa.Schema:
    """The fixed columns typed, and a string column per variable and step: a variable may hold
    any JSON value (uploaded rows differ from row to row) and a `json` step's value has its
    schema's shape, so those are text (JSON unless a string; DuckDB: `json_extract`, pandas:
    `json.loads`). A step's column says which encoding its `json` values use."""
    fields: list[pa.Field[Any]] = [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("group", pa.string()),
        *(pa.field(f"variables.{name}", pa.string()) for name in variables),
        *(pa.field(f"outputs.{name}", pa.string(), metadata=_JSON_COLUMN) for name in steps),
        pa.field("tokens_in", pa.int64(), nullable=False),
        pa.field("tokens_out", pa.int64(), nullable=False),
        pa.field("cost_usd", pa.float64(), nullable=False),
        pa.field("cached", pa.bool_(), nullable=False),
        pa.field("error", pa.string()),
    ]
    return pa.schema(fields)


def _text(value: Any) -> str | None:
    """A variable's or output's value as a Parquet string cell: text as it is, else JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else _json.encode(value).decode()


class _Columns:
    """One row group's columns, filled an item at a time."""

    def __init__(self, schema: pa.Schema, variables: Sequence[str], steps: Sequence[str]) -> None:
        self.schema = schema
        self.variables = variables
        self.steps = steps
        self.data: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.rows = 0

    def append(self, item: ExportItem) -> None:
        data = self.data
        data["index"].append(item.index)
        data["status"].append(item.status)
        data["group"].append(item.group)
        for name in self.variables:
            data[f"variables.{name}"].append(_text(item.variables.get(name)))
        for name in self.steps:
            data[f"outputs.{name}"].append(_text(item.outputs.get(name)))
        data["tokens_in"].append(item.tokens_in)
        data["tokens_out"].append(item.tokens_out)
        data["cost_usd"].append(item.cost_usd)
        data["cached"].append(item.cached)
        data["error"].append(item.error)
        self.rows += 1

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.data, schema=self.schema)


async def export_parquet(
    items: ItemSource,
    *,
    variables: Sequence[str],
    steps: Sequence[str],
    row_group_items: int = ROW_GROUP_ITEMS,
    chunk_bytes: int = CHUNK_BYTES,
) -> AsyncGenerator[bytes, None]:
    """A Parquet file (`parquet_schema(variables, steps)`, zstd) written one row group of
    `row_group_items` at a time into a sink that is drained after each, so memory is bounded by
    one row group. Variables and outputs not named are left out, as in the CSV."""
    if row_group_items <= 0:
        raise ValueError("row_group_items must be positive")
    schema = parquet_schema(variables, steps)
    sink = _Sink()
    chunks = _Chunks(chunk_bytes)
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    closed = False
    try:
        columns = _Columns(schema, variables, steps)
        async for item in each_item(items):
            columns.append(item)
            if columns.rows == row_group_items:
                writer.write_table(columns.table())
                columns = _Columns(schema, variables, steps)
                for chunk in chunks.add(sink.take()):
                    yield chunk
        if columns.rows:
            writer.write_table(columns.table())
        writer.close()
        closed = True
        for chunk in chunks.add(sink.take()) + chunks.rest():
            yield chunk
    finally:
        if not closed:  # the consumer stopped early: release the writer, drop its bytes
            writer.close()


# --- Manifests ---------------------------------------------------------------------------------


class OutputSummary(msgspec.Struct, kw_only=True, frozen=True):
    """A step's output in a manifest: what it is, not the whole of it."""

    kind: Literal["text", "json"]
    chars: int
    preview: str  # the first PREVIEW_CHARS characters (of the JSON encoding for `json`)
    file: str  # where `manifests_zip` puts it, relative to the manifest


class ManifestItem(msgspec.Struct, kw_only=True, frozen=True):
    index: int
    slug: str  # unique within the group; also the item's page directory in a published site
    status: str
    variables: dict[str, Any]
    outputs: dict[str, OutputSummary]
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    error: str | None


class ManifestTotals(msgspec.Struct, kw_only=True, frozen=True):
    items: int
    done: int
    failed: int
    tokens_in: int
    tokens_out: int
    cost_usd: float


class ManifestJob(msgspec.Struct, kw_only=True, frozen=True):
    """What made the items: the job, its pinned template version and its model."""

    id: str
    template: str
    template_version: int
    provider: str
    model: str
    group_by: str | None


class GroupManifest(msgspec.Struct, kw_only=True, frozen=True):
    group: str | None  # the group variable's value as text; None without `group_by`
    slug: str | None  # the group's directory; None without `group_by`
    path: str  # `<slug>/manifest.json`, or `manifest.json` without `group_by`
    job: ManifestJob | None = None
    items: list[ManifestItem]
    totals: ManifestTotals

    def content(self) -> bytes:
        return msgspec.json.format(_json.encode(self), indent=2) + b"\n"


def group_value(item: ExportItem, group_by: str) -> str:
    """The item's group as text: its `group` when set (as the job stored it), else a string
    variable as it is, any other value as JSON, a missing one as ""."""
    if item.group is not None:
        return item.group
    value = item.variables.get(group_by)
    if value is None:
        return ""
    return value if isinstance(value, str) else _json.encode(value).decode()


def item_label(item: ExportItem, group_by: str | None) -> str:
    """What an item's slug is made from: its variables other than the group, in order (e.g.
    "plumbing austin" for one service in one area of a business); known without rendering anything,
    so an export's manifest and a published site give an item the same slug."""
    parts = [
        value if isinstance(value, str) else _json.encode(value).decode()
        for name, value in item.variables.items()
        if name != group_by and value is not None
    ]
    return " ".join(parts)


def output_files(item: ExportItem) -> dict[str, str]:
    """Each step's file name (`<step-slug>.md` for text, `.json` for JSON values), unique."""
    slugs = UniqueSlugs()
    return {
        step: f"{slugs.take(step, fallback='output')}.{'md' if isinstance(value, str) else 'json'}"
        for step, value in item.outputs.items()
    }


def _summary(value: Any, file: str) -> OutputSummary:
    if isinstance(value, str):
        return OutputSummary(
            kind="text", chars=len(value), preview=value[:PREVIEW_CHARS], file=file
        )
    text = _json.encode(value).decode()
    return OutputSummary(kind="json", chars=len(text), preview=text[:PREVIEW_CHARS], file=file)


class _OpenGroup:
    def __init__(self, group: str | None, slug: str | None, job: ManifestJob | None) -> None:
        self.group = group
        self.slug = slug
        self.job = job
        self.items: list[ManifestItem] = []
        self.item_slugs = UniqueSlugs()

    def manifest(self) -> GroupManifest:
        return GroupManifest(
            group=self.group,
            slug=self.slug,
            path=f"{self.slug}/manifest.json" if self.slug else "manifest.json",
            job=self.job,
            items=self.items,
            totals=ManifestTotals(
                items=len(self.items),
                done=sum(i.status == COMPLETED for i in self.items),
                failed=sum(i.status == FAILED for i in self.items),
                tokens_in=sum(i.tokens_in for i in self.items),
                tokens_out=sum(i.tokens_out for i in self.items),
                cost_usd=sum(i.cost_usd for i in self.items),
            ),
        )


class ItemGrouper:
    """Splits a stream of items into groups as they arrive, handing out path-safe group and item
    slugs. The items must come grouped (e.g. `ORDER BY variables->>'<group_by>', index`): a
    group seen again after another raises ExportError, since its manifest was already handed
    out. Without `group_by` every item is in one group. `job`: put in every manifest."""

    def __init__(self, group_by: str | None, job: ManifestJob | None = None) -> None:
        self.group_by = group_by
        self.job = job
        self._group_slugs = UniqueSlugs()
        self._done: set[str] = set()
        self._open: _OpenGroup | None = None

    def add(self, item: ExportItem) -> tuple[GroupManifest | None, str | None, ManifestItem]:
        """Files `item`; returns the manifest of the group it closed (if any), the slug of its
        own group (None without `group_by`) and its manifest entry."""
        closed: GroupManifest | None = None
        if self.group_by is None:
            if self._open is None:
                self._open = _OpenGroup(None, None, self.job)
        else:
            group = group_value(item, self.group_by)
            if self._open is None or self._open.group != group:
                if group in self._done:
                    raise ExportError(
                        f"items are not ordered by {self.group_by!r}: "
                        f"group {group!r} came back after another group"
                    )
                if self._open is not None:
                    closed = self._close()
                slug = self._group_slugs.take(group, fallback=UNGROUPED_SLUG)
                self._open = _OpenGroup(group, slug, self.job)
        open_ = self._open
        slug = open_.item_slugs.take(item_label(item, self.group_by), fallback="item")
        files = output_files(item)
        entry = ManifestItem(
            index=item.index,
            slug=slug,
            status=item.status,
            variables=item.variables,
            # Relative to the manifest: `<item-slug>/<file>`.
            outputs={
                step: _summary(value, f"{slug}/{files[step]}")
                for step, value in item.outputs.items()
            },
            tokens_in=item.tokens_in,
            tokens_out=item.tokens_out,
            cost_usd=item.cost_usd,
            cached=item.cached,
            error=item.error,
        )
        open_.items.append(entry)
        return closed, open_.slug, entry

    def finish(self) -> GroupManifest | None:
        """The last group's manifest (None when there were no items)."""
        return self._close() if self._open is not None else None

    def _close(self) -> GroupManifest:
        assert self._open is not None
        manifest = self._open.manifest()
        if self._open.group is not None:
            self._done.add(self._open.group)
        self._open = None
        return manifest


async def group_manifests(
    items: ItemSource, group_by: str | None, *, job: ManifestJob | None = None
) -> AsyncGenerator[GroupManifest, None]:
    """Each group's manifest (write `manifest.content()` at `manifest.path`), as soon as its
    group is complete; items must come ordered by group (see `ItemGrouper`)."""
    grouper = ItemGrouper(group_by, job)
    async for item in each_item(items):
        closed, _, _ = grouper.add(item)
        if closed is not None:
            yield closed
    last = grouper.finish()
    if last is not None:
        yield last


async def manifests_zip(
    items: ItemSource,
    group_by: str | None,
    *,
    include_outputs: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
    modified: datetime | None = None,
    job: ManifestJob | None = None,
) -> AsyncGenerator[bytes, None]:
    """A zip (deflated, written in streaming mode) of every group's `manifest.json` and, with
    `include_outputs`, each item's outputs as `<group>/<item>/<step>.md|.json`. Items must come
    ordered by group (see `ItemGrouper`)."""
    stamp = (modified or datetime.now(UTC)).timetuple()[:6]
    sink = _Sink()
    chunks = _Chunks(chunk_bytes)
    grouper = ItemGrouper(group_by, job)

    def add(zf: zipfile.ZipFile, path: str, data: bytes) -> list[bytes]:
        info = zipfile.ZipInfo(path, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, data)
        return chunks.add(sink.take())

    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        async for item in each_item(items):
            closed, group_slug, entry = grouper.add(item)
            if closed is not None:
                for chunk in add(zf, closed.path, closed.content()):
                    yield chunk
            if include_outputs:
                prefix = f"{group_slug}/" if group_slug else ""
                for step, value in item.outputs.items():
                    data = value.encode() if isinstance(value, str) else _json.encode(value)
                    for chunk in add(zf, prefix + entry.outputs[step].file, data):
                        yield chunk
        last = grouper.finish()
        if last is not None:
            for chunk in add(zf, last.path, last.content()):
                yield chunk
    for chunk in chunks.add(sink.take()) + chunks.rest():
        yield chunk
