"""Generation spec files: JSON or YAML, the CLI's `project` and `rows_file` keys, command-line
overrides, and one-line errors that name the problem; the bundled local-business example."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from launchdeck.cli.generation_spec import (
    SpecError,
    build_spec,
    inline_rows,
    load_spec,
    spec_json,
)
from launchdeck.contracts.api import TemplateCreate
from launchdeck.libs.generation.variables import read_csv
from launchdeck.libs.prompts import Step, render_steps

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "local-business"
MODEL = {"provider": "ollama", "name": "llama3.2"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_json_spec_with_matrix() -> None:
    """A matrix spec becomes the API's GenerationCreate; `project` is taken out of the body."""
    spec = build_spec(
        {
            "project": "shop",
            "template": "pages",
            "model": MODEL,
            "variables": {"service": ["a", "b"], "area": ["x"]},
            "limits": {"concurrency": 8, "budget_usd": 2.5},
            "price": {"input_per_mtok": 1, "output_per_mtok": "2.5"},
        },
        Path("spec.json"),
    )
    assert spec.project == "shop"
    assert spec.rows_file is None
    assert spec.body.variables == {"service": ["a", "b"], "area": ["x"]}
    assert spec.body.limits.concurrency == 8
    assert spec.body.limits.budget_usd == "2.5"  # a number in the file, the API's decimal string
    assert spec.body.price is not None
    assert spec.body.price.input_per_mtok == "1"
    sent = json.loads(spec_json(spec))
    assert "project" not in sent
    assert "rows_file" not in sent
    assert sent["template"] == "pages"


def test_yaml_spec_rows_file_relative_to_the_spec_and_overrides(tmp_path: Path) -> None:
    """YAML works; `rows_file` is found beside the spec; --project/--base-url/--model win."""
    (tmp_path / "jobs").mkdir()
    write(tmp_path / "jobs", "rows.jsonl", '{"city": "Lyon"}\n')
    path = write(
        tmp_path / "jobs",
        "spec.yaml",
        "project: shop\ntemplate: pages\nrows_file: rows.jsonl\n"
        "model:\n  provider: openai\n  name: gpt-x\n  base_url: http://old:1\n",
    )
    spec = load_spec(path, project="other", base_url="http://gpu:8000", model="qwen")
    assert spec.project == "other"
    assert spec.rows_file == tmp_path / "jobs" / "rows.jsonl"
    assert spec.rows_content_type == "application/x-ndjson"
    assert spec.body.model.base_url == "http://gpu:8000"
    assert spec.body.model.name == "qwen"
    assert spec.body.model.provider == "openai"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"template": "t", "model": MODEL, "variables": {"a": ["1"]}}, "which project?"),
        ({"project": "p", "template": "t", "model": MODEL}, "no items"),
        (
            {"project": "p", "template": "t", "model": MODEL, "tempo": 1, "rows": [{}]},
            "unknown field `tempo`",
        ),
        (
            {"project": "p", "template": "t", "model": {"provider": "x", "name": "m"}, "rows": []},
            "`$.model.provider`",
        ),
        (
            {"project": "p", "template": "t", "model": MODEL, "rows_file": "r.csv", "rows": []},
            "not several",
        ),
        ({"project": "p", "template": "t", "model": MODEL, "rows_file": "r.txt"}, ".jsonl or .csv"),
        (
            {"project": "p", "template": "t", "model": MODEL, "rows_file": "no.csv"},
            "does not exist",
        ),
        ({"project": 3, "template": "t", "model": MODEL}, "`project` must be a non-empty string"),
        (["not", "an", "object"], "expected an object"),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path: Path, document: object, message: str) -> None:
    """Each misfit is a SpecError naming the file and what is wrong."""
    with pytest.raises(SpecError) as caught:
        build_spec(document, tmp_path / "spec.json")
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(tmp_path / "spec.json"))


def test_unreadable_files(tmp_path: Path) -> None:
    """Invalid JSON or YAML, or a missing file: a SpecError with the parser's reason."""
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_spec(write(tmp_path, "s.json", "{nope"))
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_spec(write(tmp_path, "s.yml", "a: [1,"))
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.json")


def test_the_local_business_example_fits() -> None:
    """The example: 12 rows (3 businesses x 2 services x 2 areas) uploaded as CSV, grouped by
    business; its template is a valid two-step template whose page step uses the outline."""
    spec = load_spec(EXAMPLE / "spec.json")
    assert spec.project == "local-pages"
    assert spec.body.group_by == "business"
    assert spec.body.parameters.seed is not None
    assert spec.rows_file == EXAMPLE / "pages.csv"
    assert spec.rows_content_type == "text/csv"
    rows = read_csv([spec.rows_file.read_bytes()]).items
    assert len(rows) == 12
    businesses = {r["business"] for r in rows}
    assert len(businesses) == 3
    for business in businesses:
        mine = [r for r in rows if r["business"] == business]
        assert len({(r["service"], r["area"]) for r in mine}) == 4
        assert len({r["service"] for r in mine}) == 2
        assert len({r["area"] for r in mine}) == 2

    template = msgspec.json.decode((EXAMPLE / "template.json").read_bytes(), type=TemplateCreate)
    assert spec.body.template == template.name
    assert [(s.name, s.output) for s in template.steps] == [("outline", "json"), ("page", "text")]
    steps = [Step(s.name, s.prompt, s.output, s.schema) for s in template.steps]
    outline, page = render_steps(steps, rows[0])
    assert "Service area: Portland" in outline.prompt
    assert "# <outline>.title" in page.prompt
    assert "- <outline>.sections[0].heading: <outline>.sections[0].summary" in page.prompt


def test_rows_file_inlined_for_a_schedule(tmp_path: Path) -> None:
    """`inline_rows` puts the rows file's items in `rows`, parsed as the API parses an upload;
    a bad line is a SpecError naming the file and the line."""
    spec = load_spec(EXAMPLE / "spec.json")
    body = inline_rows(spec)
    assert body.rows is not None
    assert len(body.rows) == 12
    assert body.rows[1] == {
        "business": "Harbor Plumbing",
        "city": "Portland",
        "phone": "+1 503 555 0142",
        "service": "emergency plumbing",
        "area": "Beaverton",
    }
    write(tmp_path, "rows.jsonl", '{"a": 1}\nnot json\n')
    bad = build_spec(
        {"project": "p", "template": "t", "model": MODEL, "rows_file": "rows.jsonl"},
        tmp_path / "spec.json",
    )
    with pytest.raises(SpecError, match=r"rows.jsonl: line 2: invalid JSON"):
        inline_rows(bad)
