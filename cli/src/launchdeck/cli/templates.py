"""`launchdeck templates create|update|list|show|render`: versioned prompt templates.

    launchdeck templates create pages.json          ({"name": ..., "steps": [...]}; or .yaml)
    launchdeck templates update pages pages.json    (the next version)
    launchdeck templates list
    launchdeck templates show pages --version 1
    launchdeck templates render pages --var business="Joe's" --var city=Lyon

`render` is the dry run: every step's prompt for one item, no model called (an earlier step's
output shows as a placeholder). The parsers and the client calls live here; `main` registers
them (`add_parsers`) and asks `command(args)` for what to run.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import (
    TemplateCreate,
    TemplateOut,
    TemplateRender,
    TemplateRendered,
    TemplateUpdate,
)

ClientCommand = Callable[[LaunchdeckClient, Terminal], Awaitable[int]]
BASE = "/api/v1/templates"


class TemplateFileError(Exception):
    """A template file that cannot be read or does not fit (said in one line)."""


# --- client calls ------------------------------------------------------------------------------


def _path(ref: str) -> str:
    return f"{BASE}/{quote(ref, safe='')}"


async def create_template(client: LaunchdeckClient, body: TemplateCreate) -> TemplateOut:
    return await client._call(TemplateOut, "POST", BASE, body=body)


async def update_template(client: LaunchdeckClient, ref: str, body: TemplateUpdate) -> TemplateOut:
    return await client._call(TemplateOut, "PUT", _path(ref), body=body)


async def get_template(client: LaunchdeckClient, ref: str, version: int | None) -> TemplateOut:
    params = {"version": str(version)} if version is not None else None
    return await client._call(TemplateOut, "GET", _path(ref), params=params)


def list_templates(
    client: LaunchdeckClient, page_size: int | None = None
) -> AsyncIterator[TemplateOut]:
    return client._pages(TemplateOut, BASE, page_size)


async def render_template(
    client: LaunchdeckClient, ref: str, body: TemplateRender
) -> TemplateRendered:
    return await client._call(TemplateRendered, "POST", f"{_path(ref)}/render", body=body)


# --- reading files and variables ---------------------------------------------------------------


def read_document(path: Path) -> Any:
    """A JSON file, or YAML (`.yaml`/`.yml`) when PyYAML is installed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateFileError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            yaml: Any = importlib.import_module("yaml")
        except ImportError:
            raise TemplateFileError(
                f"{path}: YAML needs PyYAML (pip install pyyaml); or write the template as JSON"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TemplateFileError(f"{path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TemplateFileError(f"{path} is not valid JSON: {exc}") from None


def template_file(path: Path, type_: type[Any]) -> Any:
    """The file as `type_` (TemplateCreate, TemplateUpdate): a misfit names the field."""
    document = read_document(path)
    if type_ is TemplateUpdate and isinstance(document, dict):
        document = {k: v for k, v in document.items() if k in ("name", "steps")}
    try:
        return msgspec.convert(document, type_)
    except msgspec.ValidationError as exc:
        raise TemplateFileError(f"{path}: {exc}") from None


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; a value that is JSON (`n=3`, `tags=["a"]`) is taken as such, else as text."""
    variables: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise TemplateFileError(f"--var {pair!r}: expected NAME=VALUE")
        try:
            variables[name] = json.loads(raw)
        except ValueError:
            variables[name] = raw
    return variables


# --- commands ----------------------------------------------------------------------------------


def _summary(t: TemplateOut) -> str:
    steps = ", ".join(f"{s.name} ({s.output})" for s in t.steps)
    return f"{t.name} v{t.version}: {steps}"


async def templates_create(
    client: LaunchdeckClient, term: Terminal, *, body: TemplateCreate
) -> int:
    made = await create_template(client, body)
    term.success(f"Template {_summary(made)}")
    term.info(f"  id {made.id}")
    return 0


async def templates_update(
    client: LaunchdeckClient, term: Terminal, *, ref: str, body: TemplateUpdate
) -> int:
    made = await update_template(client, ref, body)
    term.success(f"Template {_summary(made)} (versions {', '.join(map(str, made.versions))})")
    return 0


async def templates_list(client: LaunchdeckClient, term: Terminal, *, limit: int) -> int:
    rows: list[tuple[str, ...]] = [("ID", "NAME", "VERSION", "STEPS", "UPDATED (UTC)")]
    async for t in list_templates(client, page_size=limit):
        rows.append(
            (
                str(t.id),
                t.name,
                str(t.version),
                ", ".join(s.name for s in t.steps),
                t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
        )
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info("No templates.")
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0


async def templates_show(
    client: LaunchdeckClient, term: Terminal, *, ref: str, version: int | None, as_json: bool
) -> int:
    t = await get_template(client, ref, version)
    if as_json:
        term.raw(msgspec.json.format(msgspec.json.encode(t), indent=2).decode() + "\n")
        return 0
    by = f" by {t.created_by}" if t.created_by else ""
    term.info(f"{t.name} version {t.version} of {', '.join(map(str, t.versions))}")
    term.info(f"  id {t.id}, created {t.created_at:%Y-%m-%d %H:%M:%S} UTC{by}")
    for step in t.steps:
        term.info("")
        term.info(f"step {step.name} → {step.output}")
        if step.schema is not None:
            term.info(f"  schema: {json.dumps(step.schema)}")
        for line in step.prompt.splitlines():
            term.info(f"  | {line}")
    return 0


async def templates_render(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    ref: str,
    variables: dict[str, Any],
    version: int | None,
) -> int:
    rendered = await render_template(
        client, ref, TemplateRender(variables=variables, version=version)
    )
    term.info(f"{rendered.name} version {rendered.version} (dry run: no model called)")
    for step in rendered.steps:
        term.info("")
        term.info(f"--- {step.name} ({step.output}) ---")
        term.raw(step.prompt if step.prompt.endswith("\n") else step.prompt + "\n")
    return 0


# --- parsing -----------------------------------------------------------------------------------


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    templates = sub.add_parser(
        "templates",
        help="prompt templates for generation jobs (versioned)",
        description="A template is a list of steps, each a Jinja2 prompt that sees the item's "
        "variables and `steps.<earlier step>.output`; a step answers text, or JSON valid "
        "against its schema. Versions never change: `update` adds the next one.",
    )
    actions = templates.add_subparsers(dest="templates_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[common], help="create a template from a file")
    create.add_argument("file", type=Path, help='JSON (or YAML) {"name": ..., "steps": [...]}')
    update = actions.add_parser("update", parents=[common], help="add the next version")
    update.add_argument("template", help="template name or id")
    update.add_argument("file", type=Path, help='JSON (or YAML) {"steps": [...]}')
    listing = actions.add_parser("list", parents=[common], help="templates, at their latest")
    listing.add_argument("-n", "--limit", type=int, default=100, help="at most (default: 100)")
    show = actions.add_parser("show", parents=[common], help="a template's steps")
    show.add_argument("template", help="template name or id")
    show.add_argument("--version", type=int, help="this version (default: the latest)")
    show.add_argument("--json", action="store_true", help="the API's JSON")
    render = actions.add_parser(
        "render", parents=[common], help="dry run: the prompts for one item's variables"
    )
    render.add_argument("template", help="template name or id")
    render.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable (repeatable; a JSON value such as 3 or [1,2] is taken as JSON)",
    )
    render.add_argument("--version", type=int, help="this version (default: the latest)")


def _checked(make: Callable[[], ClientCommand]) -> ClientCommand:
    """Read files and variables before connecting; their errors are one line, exit code 1."""
    try:
        return make()
    except TemplateFileError as exc:
        message = str(exc)

        async def fail(_client: LaunchdeckClient, term: Terminal) -> int:
            term.error(message)
            return 1

        return fail


def command(args: argparse.Namespace) -> ClientCommand:
    match args.templates_command:
        case "create":

            def make_create() -> ClientCommand:
                body = template_file(args.file, TemplateCreate)
                return lambda c, t: templates_create(c, t, body=body)

            return _checked(make_create)
        case "update":

            def make_update() -> ClientCommand:
                body = template_file(args.file, TemplateUpdate)
                return lambda c, t: templates_update(c, t, ref=args.template, body=body)

            return _checked(make_update)
        case "list":
            limit = max(1, min(args.limit, 200))
            return lambda c, t: templates_list(c, t, limit=limit)
        case "show":
            return lambda c, t: templates_show(
                c, t, ref=args.template, version=args.version, as_json=args.json
            )
        case "render":

            def make() -> ClientCommand:
                variables = parse_vars(args.var)
                return lambda c, t: templates_render(
                    c, t, ref=args.template, variables=variables, version=args.version
                )

            return _checked(make)
    raise AssertionError(f"unhandled templates action {args.templates_command}")
