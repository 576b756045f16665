"""A generation spec file: the body of `POST /api/v1/projects/{id}/generations` as JSON or YAML,
plus two keys of the CLI's own.

    {"project": "local-pages",          # optional: else --project
     "rows_file": "pages.csv",           # optional: .jsonl or .csv, relative to the spec file
     "template": "local-business", "model": {"provider": "ollama", "name": "llama3.2"}, ...}

The rest is a `GenerationCreate`, checked here with the API's own type so a misspelt field is
named before anything is sent. A rows file is not read here: it is uploaded as it is (the API
parses it, with the same errors for the CLI as for any client).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from launchdeck.contracts.api import GenerationCreate
from launchdeck.libs.generation.variables import VariablesError, read_csv, read_jsonl

ROWS_SUFFIXES = {
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".csv": "text/csv",
}
MONEY_PRICE_KEYS = ("input_per_mtok", "output_per_mtok")


class SpecError(Exception):
    """A spec file that cannot be read or does not fit (said in one line)."""


@dataclass(frozen=True)
class GenerationSpec:
    """What to send: the job, the project it runs in, and the rows file to upload (if any)."""

    body: GenerationCreate
    project: str
    rows_file: Path | None = None

    @property
    def rows_content_type(self) -> str:
        assert self.rows_file is not None
        return ROWS_SUFFIXES[self.rows_file.suffix.lower()]


def read_document(path: Path) -> Any:
    """A JSON file, or YAML (`.yaml`/`.yml`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc}") from None


def _text(document: dict[str, Any], key: str, path: Path) -> str | None:
    value = document.pop(key, None)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{path}: `{key}` must be a non-empty string")
    return value


def _rows_file(name: str, spec_path: Path) -> Path:
    rows = Path(name).expanduser()
    if not rows.is_absolute():
        rows = spec_path.parent / rows
    if rows.suffix.lower() not in ROWS_SUFFIXES:
        raise SpecError(f"{spec_path}: `rows_file` {name!r} must end in .jsonl or .csv")
    if not rows.is_file():
        raise SpecError(f"{spec_path}: `rows_file` {rows} does not exist")
    return rows


def _money_as_text(document: dict[str, Any]) -> None:
    """`budget_usd: 0.5` (a number, as YAML and JSON writers put it) as the API's decimal string."""
    for section, keys in (("limits", ("budget_usd",)), ("price", MONEY_PRICE_KEYS)):
        part = document.get(section)
        if not isinstance(part, dict):
            continue
        fixed = dict(part)
        for key in keys:
            value = fixed.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                fixed[key] = str(value)
        document[section] = fixed


def build_spec(
    document: Any,
    path: Path,
    *,
    project: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
) -> GenerationSpec:
    """The spec of `document` (read from `path`), with the command line's overrides applied:
    `project` replaces the file's, `base_url` and `model` the model's server and name."""
    if not isinstance(document, dict):
        raise SpecError(f"{path}: expected an object with `template` and `model`")
    document = dict(document)
    project = project or _text(document, "project", path)
    document.pop("project", None)
    rows_name = _text(document, "rows_file", path)
    if project is None:
        raise SpecError(f"{path}: which project? Give --project or `project` in the spec")
    if rows_name is not None and (
        document.get("rows") is not None or document.get("variables") is not None
    ):
        raise SpecError(f"{path}: give `rows_file`, `rows` or `variables`, not several")
    if (base_url or model) and isinstance(document.get("model"), dict):
        overridden = dict(document["model"])
        if base_url:
            overridden["base_url"] = base_url
        if model:
            overridden["name"] = model
        document["model"] = overridden
    _money_as_text(document)
    try:
        body = msgspec.convert(document, GenerationCreate)
    except msgspec.ValidationError as exc:
        raise SpecError(f"{path}: {exc}") from None
    if rows_name is None and body.rows is None and body.variables is None:
        raise SpecError(f"{path}: no items: give `variables` (a matrix), `rows` or `rows_file`")
    rows_file = _rows_file(rows_name, path) if rows_name is not None else None
    return GenerationSpec(body=body, project=project, rows_file=rows_file)


def load_spec(
    path: Path,
    *,
    project: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
) -> GenerationSpec:
    """`build_spec` of the file at `path`."""
    return build_spec(read_document(path), path, project=project, base_url=base_url, model=model)


def inline_rows(spec: GenerationSpec) -> GenerationCreate:
    """The body with the rows file's items as `rows` (a schedule keeps no uploaded file: its
    action holds the whole job). Parsed as the API parses an upload, so the items are the same."""
    if spec.rows_file is None:
        return spec.body
    parse = read_csv if spec.rows_file.suffix.lower() == ".csv" else read_jsonl
    try:
        with spec.rows_file.open("rb") as rows:
            items = parse(iter(lambda: rows.read(64 * 1024), b"")).items
    except OSError as exc:
        raise SpecError(f"cannot read {spec.rows_file}: {exc}") from None
    except VariablesError as exc:
        raise SpecError(f"{spec.rows_file}: {exc.message}") from None
    return msgspec.structs.replace(spec.body, rows=items)


def spec_json(spec: GenerationSpec) -> bytes:
    """The body as the API reads it (the `spec` part of a multipart upload, or the whole body)."""
    return msgspec.json.encode(spec.body)
