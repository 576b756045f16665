"""A job's variables as items: a matrix expanded to its cross product, or uploaded rows.

- **Matrix** `{"name": [values, ...]}`: the cross product, first key outermost (the order of
  the mapping, which is the order of the request's JSON object), so `{"a": [1, 2], "b": [x, y]}`
  gives `a=1 b=x, a=1 b=y, a=2 b=x, a=2 b=y` — the item index is stable for a given request.
  Values are scalars (str, int, float, bool; finite floats); a list may not be empty. An empty
  matrix `{}` is one item without variables (a template that needs none, run once).
- **Rows**: a list of objects (the request body's `rows`), or an upload as JSONL (one object per
  line, blank lines skipped) or CSV (a header row, then one item per record; every value a
  string). Inline and JSONL values may be any JSON value (a business's list of services); rows
  may differ in their keys (a missing one is the template's undefined-variable error). Uploads
  are read from an iterable of bytes or str chunks as they come; nothing but the items is kept.
- **Bounds**: at most `max_items` items (100,000 by default, the caller's setting), checked
  before a matrix is expanded (the product of its list lengths) and while rows are read.
- **Names** match `NAME_PATTERN` (a Jinja identifier) and `steps` is reserved (templates read
  earlier outputs as `steps.<name>.output`, see `launchdeck.libs.prompts`).

Every error is a `VariablesError` with a field path (`variables.city`, `variables.city[2]`,
`rows[12]`: the index of the item, 0-based) and a message that, for uploads, names the line or
the CSV row — ready to become a 422 field error.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

MAX_ITEMS = 100_000
MAX_LINE_BYTES = 1024 * 1024  # one JSONL line or CSV record: a bound on what a bad upload holds
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
# The same as launchdeck.libs.prompts.RESERVED_VARIABLES (checked by a test; not imported so
# that this package needs no Jinja2).
RESERVED_NAMES = frozenset({"steps"})

Scalar = str | int | float | bool
_NAME = re.compile(NAME_PATTERN)


class VariablesError(ValueError):
    """Why a job's variables or rows are refused: `field` is a path into the request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Expansion:
    """The items of a job, in order, and the variable names in first-seen order (the export's
    `variables.<name>` columns)."""

    names: tuple[str, ...]
    items: list[dict[str, Any]]


def _check_name(name: Any, field: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise VariablesError(field, f"{name!r} is not a valid name (letters, digits, _)")
    if name in RESERVED_NAMES:
        raise VariablesError(field, f"{name!r} is reserved")
    return name


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool))


# --- matrix --------------------------------------------------------------------------------------


def expand_matrix(matrix: Any, *, max_items: int = MAX_ITEMS) -> Expansion:
    """The cross product of `matrix`, first key outermost; VariablesError when it is not an
    object of non-empty lists of scalars, or has more than `max_items` items."""
    if not isinstance(matrix, Mapping):
        raise VariablesError("variables", "must be an object of lists")
    lists: list[tuple[str, list[Scalar]]] = []
    for name, values in matrix.items():
        field = f"variables.{name}"
        _check_name(name, field)
        if not isinstance(values, list) or not values:
            raise VariablesError(field, "must be a non-empty list of values")
        for i, value in enumerate(values):
            if not _is_scalar(value):
                raise VariablesError(f"{field}[{i}]", "must be a string, number or boolean")
        lists.append((name, values))
    count = math.prod(len(values) for _, values in lists)
    if count > max_items:
        sizes = " x ".join(f"{name} {len(values)}" for name, values in lists)
        raise VariablesError(
            "variables", f"{count:,} items is more than the limit of {max_items:,} ({sizes})"
        )
    items: list[dict[str, Any]] = [{}]
    for name, values in lists:  # the last key varies fastest
        items = [{**item, name: value} for item in items for value in values]
    return Expansion(tuple(name for name, _ in lists), items)


# --- rows ----------------------------------------------------------------------------------------


class _Collector:
    """Items as they are read, with the names in first-seen order and the bound."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.items: list[dict[str, Any]] = []
        self.names: dict[str, None] = {}

    @property
    def field(self) -> str:
        return f"rows[{len(self.items)}]"

    def add(self, row: Any, where: str) -> None:
        prefix = f"{where}: " if where else ""
        if not isinstance(row, dict):
            raise VariablesError(self.field, f"{prefix}must be an object")
        if len(self.items) >= self.max_items:
            raise VariablesError("rows", f"{prefix}more than the limit of {self.max_items:,} items")
        for name in row:
            if name not in self.names:
                try:
                    _check_name(name, self.field)
                except VariablesError as exc:
                    raise VariablesError(exc.field, prefix + exc.message) from None
                self.names[name] = None
        self.items.append(row)

    def result(self) -> Expansion:
        if not self.items:
            raise VariablesError("rows", "no rows")
        return Expansion(tuple(self.names), self.items)


def expand_rows(rows: Any, *, max_items: int = MAX_ITEMS) -> Expansion:
    """Rows given in the request body as a list of objects."""
    if not isinstance(rows, list):
        raise VariablesError("rows", "must be a list of objects")
    if len(rows) > max_items:
        raise VariablesError("rows", f"{len(rows):,} items is more than the limit of {max_items:,}")
    collector = _Collector(max_items)
    for row in rows:
        collector.add(row, "")
    return collector.result()


def _lines(chunks: Iterable[bytes | str]) -> Iterator[str]:
    """Lines with their `\\n`, decoded as UTF-8 (a BOM dropped), from chunks cut anywhere."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    line_no = 0
    for chunk in chunks:
        try:
            text = decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        except UnicodeDecodeError:
            raise VariablesError("rows", f"line {line_no + 1}: not UTF-8") from None
        pending += text
        *complete, pending = pending.split("\n")
        for line in complete:
            line_no += 1
            yield line + "\n"
        if len(pending.encode()) > MAX_LINE_BYTES:
            raise VariablesError("rows", f"line {line_no + 1}: longer than {MAX_LINE_BYTES} bytes")
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise VariablesError("rows", f"line {line_no + 1}: not UTF-8") from None
    if pending:
        yield pending


_JSON = msgspec.json.Decoder()


def read_jsonl(chunks: Iterable[bytes | str], *, max_items: int = MAX_ITEMS) -> Expansion:
    """Rows uploaded as JSON Lines: one object per line; blank lines skipped."""
    collector = _Collector(max_items)
    for line_no, line in enumerate(_lines(chunks), start=1):
        if not line.strip():
            continue
        try:
            row = _JSON.decode(line)
        except msgspec.DecodeError as exc:
            raise VariablesError(collector.field, f"line {line_no}: invalid JSON ({exc})") from None
        collector.add(row, f"line {line_no}")
    return collector.result()


def read_csv(chunks: Iterable[bytes | str], *, max_items: int = MAX_ITEMS) -> Expansion:
    """Rows uploaded as CSV: a header row of variable names (none empty, none twice), then one
    item per record, each value a string. Blank records are skipped."""
    reader = csv.reader(_lines(chunks), strict=True)
    collector = _Collector(max_items)
    try:
        header = next(reader, None)
        if header is None:
            raise VariablesError("rows", "no header row")
        seen: set[str] = set()
        for column, name in enumerate(header, start=1):
            where = f"header, column {column}"
            if not name.strip():
                raise VariablesError("rows", f"{where}: an empty name")
            if name in seen:
                raise VariablesError("rows", f"{where}: {name!r} appears twice")
            try:
                _check_name(name, "rows")
            except VariablesError as exc:
                raise VariablesError("rows", f"{where}: {exc.message}") from None
            seen.add(name)
        for row_no, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            where = f"row {row_no} (line {reader.line_num})"
            if len(record) != len(header):
                raise VariablesError(
                    collector.field,
                    f"{where}: {len(record)} values, the header has {len(header)}",
                )
            collector.add(dict(zip(header, record, strict=True)), where)
    except csv.Error as exc:
        raise VariablesError(collector.field, f"line {reader.line_num}: {exc}") from None
    return collector.result()


# --- the job -------------------------------------------------------------------------------------


def check_one_source(*, variables_given: bool, rows_given: bool) -> None:
    """A job has either a matrix or rows (inline or uploaded): never both, never neither."""
    if variables_given and rows_given:
        raise VariablesError("variables", "give either variables or rows, not both")
    if not variables_given and not rows_given:
        raise VariablesError("variables", "give variables (a matrix of lists) or rows")


def expand_job(variables: Any = None, rows: Any = None, *, max_items: int = MAX_ITEMS) -> Expansion:
    """The items of a job request: `variables` (a matrix) or `rows` (a list of objects)."""
    check_one_source(variables_given=variables is not None, rows_given=rows is not None)
    if variables is not None:
        return expand_matrix(variables, max_items=max_items)
    return expand_rows(rows, max_items=max_items)
