"""Streaming exports of generated items (`libs.exports`): each format read back, bounded chunks,
manifests per group, the zip, path-safe names."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import PurePosixPath
from typing import Any

import pyarrow.parquet as pq
import pytest

from launchdeck.libs.exports import (
    ExportError,
    ExportItem,
    csv_header,
    export_csv,
    export_jsonl,
    export_parquet,
    group_manifests,
    manifests_zip,
)
from launchdeck.libs.slugs import UniqueSlugs, slugify

VARIABLES = ["business", "service", "area"]
STEPS = ["outline", "page"]


def item(index: int, **overrides: Any) -> ExportItem:
    fields: dict[str, Any] = {
        "index": index,
        "status": "done",
        "variables": {"business": "Acme", "service": "Plumbing", "area": f"Area {index}"},
        "outputs": {"outline": {"sections": ["intro", index]}, "page": f"# Page {index}\n\nText."},
        "tokens_in": 10 + index,
        "tokens_out": 100,
        "cost_usd": 0.0015,
        "cached": index % 2 == 1,
    }
    fields.update(overrides)
    return ExportItem(**fields)


async def stream(items: list[ExportItem]) -> AsyncIterator[ExportItem]:
    """Items as the store would hand them: asynchronously, one at a time."""
    for one in items:
        yield one


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_jsonl_round_trips_every_field() -> None:
    """Each line is one item with all its fields, in order."""
    items = [item(0), item(1, status="failed", error="HTTP 401: bad key", outputs={})]
    data = await collect(export_jsonl(stream(items)))
    lines = data.decode().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["variables"]["area"] == "Area 0"
    assert first["outputs"] == {"outline": {"sections": ["intro", 0]}, "page": "# Page 0\n\nText."}
    assert (first["tokens_in"], first["cost_usd"], first["cached"]) == (10, 0.0015, False)
    assert (second["status"], second["error"], second["outputs"]) == (
        "failed",
        "HTTP 401: bad key",
        {},
    )


async def test_csv_reads_back_with_quotes_newlines_unicode_and_formula_guard() -> None:
    """RFC 4180 quoting survives csv.reader; formula-like cells are prefixed with a quote."""
    hostile = item(
        0,
        variables={"business": 'Bob\'s "Best", Inc.', "service": '=HYPERLINK("x")', "area": -3},
        outputs={"outline": {"a": 1}, "page": "line one\r\nline two, café ☕\n@import"},
        error="+1 error",
    )
    plain = item(1, variables={"business": "Zoë", "service": "Dach"}, outputs={"page": "ok"})
    data = await collect(export_csv([hostile, plain], variables=VARIABLES, steps=STEPS))
    assert data.startswith(b"index,status,group,variables.business")
    assert b"\r\n" in data
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[0] == csv_header(VARIABLES, STEPS)
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["variables.business"] == 'Bob\'s "Best", Inc.'
    assert row["variables.service"] == '\'=HYPERLINK("x")'
    assert row["variables.area"] == "'-3"  # JSON-encoded, then guarded
    assert row["outputs.outline"] == '{"a":1}'
    assert row["outputs.page"] == "line one\r\nline two, café ☕\n@import"
    assert row["error"] == "'+1 error"
    assert (row["tokens_in"], row["cost_usd"], row["cached"]) == ("10", "0.0015", "false")
    other = dict(zip(rows[0], rows[2], strict=True))
    assert other["variables.business"] == "Zoë"
    assert (other["variables.area"], other["outputs.outline"], other["error"]) == ("", "", "")
    assert len(rows) == 3


async def test_parquet_reads_back_with_pyarrow_in_row_groups() -> None:
    """The Parquet file has typed fixed columns, one row group per N items, a text column per
    variable and step (a `json` step's value as JSON text)."""
    items = [item(i) for i in range(25)] + [item(25, status="failed", error="timeout")]
    data = await collect(
        export_parquet(stream(items), variables=VARIABLES, steps=STEPS, row_group_items=10)
    )
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.metadata.num_row_groups == 3
    table = parquet.read()
    assert table.num_rows == 26
    rows = table.to_pylist()
    assert rows[3]["index"] == 3
    assert rows[3]["variables.area"] == "Area 3"
    assert rows[3]["outputs.page"] == "# Page 3\n\nText."
    assert json.loads(rows[3]["outputs.outline"]) == {"sections": ["intro", 3]}
    assert (rows[3]["tokens_in"], rows[3]["cached"], rows[3]["error"]) == (13, True, None)
    assert (rows[25]["status"], rows[25]["error"]) == ("failed", "timeout")
    assert table.schema.field("outputs.outline").metadata == {b"launchdeck.encoding": b"json"}
    assert str(table.schema.field("tokens_in").type) == "int64"


async def test_parquet_of_no_items_is_a_valid_empty_file() -> None:
    """An export of an empty job still opens, with the schema and no rows."""
    chunks = export_parquet(stream([]), variables=VARIABLES, steps=STEPS)
    table = pq.read_table(io.BytesIO(await collect(chunks)))
    assert table.num_rows == 0
    assert "outputs.page" in table.schema.names


def many(n: int) -> Iterator[ExportItem]:
    for i in range(n):
        yield item(i, outputs={"page": f"# Page {i}\n\n" + "word " * 40})


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
async def test_ten_thousand_items_stream_in_bounded_chunks(fmt: str) -> None:
    """10,000 items come out as many chunks, none larger than the chunk size."""
    bound = 16 * 1024
    if fmt == "jsonl":
        chunks = export_jsonl(many(10_000), chunk_bytes=bound)
    elif fmt == "csv":
        chunks = export_csv(many(10_000), variables=VARIABLES, steps=STEPS, chunk_bytes=bound)
    else:
        chunks = export_parquet(
            many(10_000), variables=VARIABLES, steps=STEPS, row_group_items=500, chunk_bytes=bound
        )
    sizes: list[int] = []
    parts: list[bytes] = []
    async for chunk in chunks:
        sizes.append(len(chunk))
        parts.append(chunk)
    assert max(sizes) <= bound
    assert len(sizes) > 5
    data = b"".join(parts)
    if fmt == "jsonl":
        assert data.count(b"\n") == 10_000
    elif fmt == "csv":
        assert len(list(csv.reader(io.StringIO(data.decode(), newline="")))) == 10_001
    else:
        parquet = pq.ParquetFile(io.BytesIO(data))
        assert (parquet.metadata.num_rows, parquet.metadata.num_row_groups) == (10_000, 20)


def business_items() -> list[ExportItem]:
    """Two businesses, in group order; one failed item; two items with the same label."""
    return [
        item(0, variables={"business": "Acme Plumbing", "service": "Repair", "area": "Austin"}),
        item(1, variables={"business": "Acme Plumbing", "service": "Repair", "area": "Austin"}),
        item(
            2,
            status="failed",
            error="bad JSON",
            outputs={},
            variables={"business": "Acme Plumbing", "service": "Install", "area": "Dallas"},
        ),
        item(3, variables={"business": "Bolt Electric", "service": "Wiring", "area": "Austin"}),
    ]


async def test_manifests_per_group_with_items_slugs_and_totals() -> None:
    """One manifest per group: its items' variables, output summaries, slugs, tokens and cost."""
    manifests = [m async for m in group_manifests(stream(business_items()), "business")]
    assert [m.path for m in manifests] == [
        "acme-plumbing/manifest.json",
        "bolt-electric/manifest.json",
    ]
    acme = json.loads(manifests[0].content())
    assert acme["group"] == "Acme Plumbing"
    assert [i["slug"] for i in acme["items"]] == [
        "repair-austin",
        "repair-austin-2",
        "install-dallas",
    ]
    first = acme["items"][0]
    assert first["variables"]["area"] == "Austin"
    assert first["outputs"]["page"] == {
        "kind": "text",
        "chars": len("# Page 0\n\nText."),
        "preview": "# Page 0\n\nText.",
        "file": "repair-austin/page.md",
    }
    assert first["outputs"]["outline"]["kind"] == "json"
    assert first["outputs"]["outline"]["file"] == "repair-austin/outline.json"
    assert acme["items"][2]["error"] == "bad JSON"
    assert acme["totals"] == {
        "items": 3,
        "done": 2,
        "failed": 1,
        "tokens_in": 10 + 11 + 12,
        "tokens_out": 300,
        "cost_usd": pytest.approx(0.0045),
    }


async def test_manifest_without_group_by_is_one_file_at_the_root() -> None:
    """Without a group variable every item is in `manifest.json`."""
    manifests = [m async for m in group_manifests(stream(business_items()), None)]
    assert [(m.path, m.group, len(m.items)) for m in manifests] == [("manifest.json", None, 4)]


async def test_manifests_refuse_items_not_ordered_by_group() -> None:
    """A group coming back after another is an error, not a second manifest at the same path."""
    items = business_items()
    with pytest.raises(ExportError, match="not ordered by 'business'"):
        _ = [m async for m in group_manifests(stream([*items, items[0]]), "business")]


async def test_zip_opens_back_with_manifests_and_outputs() -> None:
    """The streamed zip opens with zipfile; its files are the manifests and every output."""
    data = await collect(manifests_zip(stream(business_items()), "business", chunk_bytes=512))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        assert names == {
            "acme-plumbing/manifest.json",
            "acme-plumbing/repair-austin/page.md",
            "acme-plumbing/repair-austin/outline.json",
            "acme-plumbing/repair-austin-2/page.md",
            "acme-plumbing/repair-austin-2/outline.json",
            "bolt-electric/manifest.json",
            "bolt-electric/wiring-austin/page.md",
            "bolt-electric/wiring-austin/outline.json",
        }
        manifest = json.loads(zf.read("bolt-electric/manifest.json"))
        page = manifest["items"][0]["outputs"]["page"]["file"]
        assert zf.read(f"bolt-electric/{page}") == b"# Page 3\n\nText."
        assert json.loads(zf.read("acme-plumbing/repair-austin/outline.json")) == {
            "sections": ["intro", 0]
        }


async def test_zip_of_manifests_only() -> None:
    """Without outputs the zip holds just the manifests."""
    data = await collect(manifests_zip(business_items(), "business", include_outputs=False))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == [
            "acme-plumbing/manifest.json",
            "bolt-electric/manifest.json",
        ]


HOSTILE_GROUPS = [
    "../../etc",
    "/etc/passwd",
    "..",
    ".",
    "",
    "a/../../b",
    "C:\\Windows\\System32",
    "\x00nul",
    "~root",
    "東京",
    "x" * 500,
    "ETC",
]


async def test_hostile_group_names_stay_inside_the_zip() -> None:
    """Traversal, absolute, empty, non-Latin and overlong group values become distinct slugs."""
    items = [
        item(i, variables={"business": name, "service": "s", "area": "a"})
        for i, name in enumerate(HOSTILE_GROUPS)
    ]
    data = await collect(manifests_zip(items, "business"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    manifests = [n for n in names if n.endswith("/manifest.json")]
    assert len(manifests) == len(HOSTILE_GROUPS)  # distinct groups, distinct directories
    for name in names:
        path = PurePosixPath(name)
        assert not path.is_absolute()
        assert ".." not in path.parts
        assert all(part and part not in (".", "..") for part in path.parts)
        assert "\\" not in name
        assert "\x00" not in name
        assert len(path.parts[0]) <= 80
    assert "etc/manifest.json" in names
    assert "etc-2/manifest.json" in names  # "ETC" after "../../etc"


def test_slugify_and_unique_slugs() -> None:
    """Slugs are lower-case ASCII path segments; repeats get -2, -3."""
    assert slugify("Café Déjà Vu!") == "cafe-deja-vu"
    assert slugify("../..", fallback="group") == "group"
    slugs = UniqueSlugs()
    assert [slugs.take(v) for v in ["A b", "a-b", "a b", "a-b-2", "!!"]] == [
        "a-b",
        "a-b-2",
        "a-b-3",
        "a-b-2-2",
        "item",
    ]


async def test_stopping_a_parquet_export_early_releases_the_writer() -> None:
    """A client that disconnects after the first chunk ends the export without an error."""
    chunks = export_parquet(
        many(3_000), variables=VARIABLES, steps=STEPS, row_group_items=100, chunk_bytes=1024
    )
    first = await anext(chunks)
    assert first.startswith(b"PAR1")
    await chunks.aclose()
