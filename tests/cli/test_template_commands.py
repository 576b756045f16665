"""`launchdeck templates create|update|list|show|render` against the real control-api: files in,
tables and prompts out, and readable errors (syntax error with its line, undefined variable,
a bad file) with exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launchdeck.cli.templates import parse_vars
from tests.cli.test_env_commands import RealApi, cli, printed, real_api
from tests.control_api.support import unique

__all__ = ["real_api"]

STEPS = [
    {
        "name": "outline",
        "prompt": "Outline {{ business }} in {{ city }}.",
        "output": "json",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
    },
    {"name": "page", "prompt": "Page: {{ steps.outline.output.title }}\nfor {{ business }}"},
]


def write(tmp_path: Path, name: str, document: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_create_list_show_render_update(
    real_api: RealApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = unique("cli-tpl")
    assert (
        cli(
            real_api,
            "templates",
            "create",
            write(tmp_path, "t.json", {"name": name, "steps": STEPS}),
        )
        == 0
    )
    assert f"Template {name} v1: outline (json), page (text)" in capsys.readouterr().out

    assert cli(real_api, "templates", "list") == 0
    lines = printed(capsys.readouterr().out)
    assert lines[0].split()[:4] == ["ID", "NAME", "VERSION", "STEPS"]
    row = next(line for line in lines if name in line).split()
    assert row[1:4] == [name, "1", "outline,"]

    code = cli(
        real_api, "templates", "render", name,
        "--var", "business=Joe's", "--var", "city=Lyon",
    )  # fmt: skip
    assert code == 0
    out = printed(capsys.readouterr().out)
    assert out[out.index("--- outline (json) ---") + 1] == "Outline Joe's in Lyon."
    assert out[out.index("--- page (text) ---") + 1 :] == ["Page: <outline>.title", "for Joe's"]

    two = [{"name": "page", "prompt": "Only {{ business }}"}]
    assert (
        cli(real_api, "templates", "update", name, write(tmp_path, "u.json", {"steps": two})) == 0
    )
    assert "(versions 1, 2)" in capsys.readouterr().out
    assert cli(real_api, "templates", "show", name, "--version", "1") == 0
    shown = printed(capsys.readouterr().out)
    assert shown[0] == f"{name} version 1 of 1, 2"
    assert "  | Outline {{ business }} in {{ city }}." in shown
    assert cli(real_api, "templates", "show", name, "--json") == 0
    assert json.loads("\n".join(printed(capsys.readouterr().out)))["version"] == 2


def test_errors_are_readable(
    real_api: RealApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = unique("cli-tpl")
    broken = [{"name": "page", "prompt": "a\n{{ oops }"}]
    assert (
        cli(
            real_api,
            "templates",
            "create",
            write(tmp_path, "b.json", {"name": name, "steps": broken}),
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "steps[0].prompt" in err
    assert "line 2" in err

    assert (
        cli(
            real_api,
            "templates",
            "create",
            write(tmp_path, "t.json", {"name": name, "steps": STEPS}),
        )
        == 0
    )
    capsys.readouterr()
    assert cli(real_api, "templates", "render", name, "--var", "business=B") == 1
    assert "'city' is undefined" in capsys.readouterr().err

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli(real_api, "templates", "create", str(bad)) == 1
    assert "is not valid JSON" in capsys.readouterr().err
    assert cli(real_api, "templates", "create", str(tmp_path / "missing.json")) == 1
    assert "cannot read" in capsys.readouterr().err
    assert cli(real_api, "templates", "render", name, "--var", "novalue") == 1
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_yaml_files_are_read(
    real_api: RealApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("yaml")
    name = unique("cli-tpl")
    path = tmp_path / "t.yaml"
    path.write_text(
        f"name: {name}\nsteps:\n  - name: hello\n    prompt: |\n      Hello {{{{ who }}}}\n"
    )
    assert cli(real_api, "templates", "create", str(path)) == 0
    capsys.readouterr()
    assert cli(real_api, "templates", "render", name, "--var", "who=you") == 0
    assert "Hello you" in printed(capsys.readouterr().out)


def test_vars_take_json_values_or_text() -> None:
    assert parse_vars(["n=3", 'tags=["a"]', "city=Lyon", "eq=a=b", "empty="]) == {
        "n": 3,
        "tags": ["a"],
        "city": "Lyon",
        "eq": "a=b",
        "empty": "",
    }
