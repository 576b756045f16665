"""`launchdeck generate SPEC` and `launchdeck generations list|show|cancel|export|publish`.

    launchdeck generate examples/local-business/spec.json --dry-run     (prompts and estimate)
    launchdeck generate spec.yaml --project shop --base-url http://gpu:11434
    launchdeck generations list --project shop
    launchdeck generations show 3f1c… --failed
    launchdeck generations follow 3f1c…                                 (live, until it ends)
    launchdeck generations export 3f1c… --format parquet -o pages.parquet
    launchdeck generations export 3f1c… --manifests
    launchdeck generations publish 3f1c… --project shop-pages

`generate` creates the job and follows it live (a progress bar on a terminal, a line per update
otherwise) until it ends: exit 0 when it succeeded, 1 with the reason when it failed, ran out
of budget or was cancelled. The spec format is in `generation_spec`; the calls and the live
follow in `generation_client`. `main` registers the parsers (`add_parsers`) and asks
`command(args)` for what to run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from launchdeck.cli import commands
from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.generation_client import (
    EXPORT_FORMATS,
    cancel_generation,
    create_generation,
    download_export,
    dry_run,
    generation_items,
    get_generation,
    list_generations,
    publish_generation,
    watch,
)
from launchdeck.cli.generation_progress import ProgressDisplay, compact
from launchdeck.cli.generation_spec import GenerationSpec, SpecError, load_spec
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import (
    GenerationEstimate,
    GenerationItemOut,
    GenerationOut,
    GenerationPublish,
)
from launchdeck.contracts.messages import GenerationProgress
from launchdeck.contracts.statuses import GenerationItemStatus

ClientCommand = Callable[[LaunchdeckClient, Terminal], Awaitable[int]]
DEFAULT_PROMPTS = 3
CELL_CHARS = 60

# --- formatting --------------------------------------------------------------------------------


def _one_line(value: Any, limit: int = CELL_CHARS) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def variables_text(variables: dict[str, Any]) -> str:
    """`business=Joe's, area=Lyon`: an item's variables on one line."""
    return ", ".join(f"{k}={v}" for k, v in variables.items())


def estimate_lines(estimate: GenerationEstimate) -> list[str]:
    """A dry run: the estimate, then each rendered prompt under a header."""
    lines = [
        f"Dry run: {estimate.items} items, {estimate.calls} model calls "
        f"(no model called, nothing stored)",
        f"  tokens in  ~{estimate.tokens_in:,} (an overestimate of the rendered prompts)",
        f"  tokens out ≤{estimate.tokens_out:,} (max tokens per call)",
        f"  cost       ${estimate.cost_usd} at the job's price",
    ]
    for prompt in estimate.prompts:
        lines += ["", f"=== item {prompt.index}: {variables_text(prompt.variables)} ==="]
        for step in prompt.steps:
            lines.append(f"--- {step.name} ({step.output}) ---")
            lines += step.prompt.rstrip("\n").split("\n")
    return lines


def job_lines(job: GenerationOut) -> list[str]:
    """`generations show`: what the job is and where it stands."""
    server = f" at {job.model.base_url}" if job.model.base_url else ""
    when = [f"created {job.created_at:%Y-%m-%d %H:%M:%S} UTC"]
    if job.started_at:
        when.append(f"started {job.started_at:%H:%M:%S}")
    if job.finished_at:
        when.append(f"finished {job.finished_at:%H:%M:%S}")
    lines = [
        f"Generation {job.id}: {job.status}",
        f"  template {job.template_name} v{job.template_version}, "
        f"model {job.model.provider} {job.model.name}{server}",
        f"  items    {job.total}: {job.done} done, {job.failed} failed, {job.pending} pending"
        f" ({job.cached} from the cache)",
        f"  tokens   {job.tokens_in:,} in, {job.tokens_out:,} out; cost ${job.cost_usd}",
        "  " + ", ".join(when) + (f" by {job.created_by}" if job.created_by else ""),
    ]
    if job.group_by:
        lines.append(f"  grouped by {job.group_by}")
    if job.error:
        lines.append(f"  error: {job.error}")
    return lines


def item_rows(items: list[GenerationItemOut]) -> list[str]:
    """Items as a table: the last output (or the error) cut to one short line."""
    rows: list[tuple[str, ...]] = [("#", "STATUS", "TOKENS", "GROUP", "VARIABLES", "OUTPUT")]
    for item in items:
        if item.error:
            shown = "error: " + item.error
        elif item.outputs:
            shown = list(item.outputs.values())[-1]
        else:
            shown = "-"
        cached = " (cached)" if item.cached else ""
        rows.append(
            (
                str(item.index),
                item.status + cached,
                str(item.tokens_in + item.tokens_out),
                _one_line(item.group or "-", 24),
                _one_line(variables_text(item.variables), 40),
                _one_line(shown),
            )
        )
    return [line.rstrip() for line in table(rows)]


def outcome(progress: GenerationProgress) -> tuple[int, str]:
    """The exit code of a finished job and its last line."""
    counts = (
        f"{progress.done} of {progress.total} done, {progress.failed} failed; "
        f"{progress.tokens_in + progress.tokens_out:,} tokens; ${progress.cost_usd}"
    )
    match progress.status:
        case "succeeded":
            return 0, f"Generation {progress.job_id} succeeded: {counts}"
        case "budget_exceeded":
            left = progress.total - progress.done - progress.failed
            return 1, (
                f"generation {progress.job_id} stopped: its budget is spent ({counts}; "
                f"{left} items not called)"
            )
        case "cancelled":
            return 1, f"generation {progress.job_id} was cancelled ({counts})"
        case _:
            reason = progress.error or "see `launchdeck generations show`"
            return 1, f"generation {progress.job_id} {progress.status}: {reason} ({counts})"


# --- commands ----------------------------------------------------------------------------------


async def follow(client: LaunchdeckClient, term: Terminal, job_id: str) -> int:
    """Show the job's progress until it ends; its exit code. Ctrl-C stops following only."""
    display = ProgressDisplay(term.out)
    try:
        final = await watch(client, job_id, display.update)
    except asyncio.CancelledError:
        display.close()
        term.info(
            "Stopped following; the job goes on. Cancel it with: "
            f"launchdeck generations cancel {job_id}"
        )
        raise
    finally:
        display.close()  # an error message starts on a line of its own
    code, line = outcome(final)
    if code == 0:
        term.success(line)
        if final.failed:
            term.warn(f"{final.failed} items failed: launchdeck generations show {job_id} --failed")
        term.info(f"Export: launchdeck generations export {job_id} --format jsonl")
    else:
        term.error(line)
    return code


async def generate(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    spec: GenerationSpec,
    dry: bool,
    prompts: int,
    wait: bool,
) -> int:
    if dry:
        for line in estimate_lines(await dry_run(client, spec, prompts)):
            term.info(line)
        return 0
    job = await create_generation(client, spec)
    term.info(
        f"Generation {job.id} {job.status}: {job.total} items, template "
        f"{job.template_name} v{job.template_version}, {job.model.provider} {job.model.name}"
    )
    if not wait:
        term.info(f"Follow it with: launchdeck generations follow {job.id}")
        return 0
    return await follow(client, term, str(job.id))


async def generations_list(
    client: LaunchdeckClient, term: Terminal, *, project: str, limit: int
) -> int:
    rows: list[tuple[str, ...]] = [
        ("ID", "STATUS", "TEMPLATE", "DONE", "FAILED", "TOKENS", "COST", "CREATED (UTC)")
    ]
    async for job in list_generations(client, project, page_size=limit):
        rows.append(
            (
                str(job.id),
                job.status,
                f"{job.template_name} v{job.template_version}",
                f"{job.done}/{job.total}",
                str(job.failed),
                compact(job.tokens_in + job.tokens_out),
                f"${job.cost_usd}",
                job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
        )
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info(f"No generation jobs in {project}. Start one with: launchdeck generate SPEC")
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0


async def generations_show(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    job_id: str,
    items: int,
    failed_only: bool,
    as_json: bool = False,
) -> int:
    job = await get_generation(client, job_id)
    if as_json:
        term.raw(msgspec.json.format(msgspec.json.encode(job), indent=2).decode() + "\n")
        return 0
    for line in job_lines(job):
        term.info(line)
    if items <= 0:
        return 0
    shown: list[GenerationItemOut] = []
    status: GenerationItemStatus | None = "failed" if failed_only else None
    async for item in generation_items(client, job_id, status=status, page_size=items):
        shown.append(item)
        if len(shown) >= items:
            break
    term.info("")
    if not shown:
        term.info("No failed items." if failed_only else "No items.")
        return 0
    for line in item_rows(shown):
        term.info(line)
    return 0


async def generations_cancel(client: LaunchdeckClient, term: Terminal, *, job_id: str) -> int:
    job = await cancel_generation(client, job_id)
    if job.status == "cancelled":
        term.success(f"Generation {job.id} cancelled: {job.done} done, {job.pending} not called")
    else:
        term.success(f"Generation {job.id}: cancel requested ({job.status}); no new calls start")
    return 0


@contextmanager
def _sink(output: str) -> Iterator[BinaryIO]:
    """Standard output for `-`; else a `.part` file renamed once complete, so an interrupted
    download never leaves a file that looks whole."""
    if output == "-":
        yield sys.stdout.buffer
        return
    partial = Path(output + ".part")
    try:
        with partial.open("wb") as sink:
            yield sink
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


async def generations_export(
    client: LaunchdeckClient, term: Terminal, *, job_id: str, fmt: str | None, output: str | None
) -> int:
    target = output or (
        f"generation-{job_id}-manifests.zip" if fmt is None else f"generation-{job_id}.{fmt}"
    )
    with _sink(target) as sink:
        size = await download_export(client, job_id, sink, fmt=fmt)
    if target != "-":
        what = "manifests" if fmt is None else fmt
        term.success(f"Wrote {target} ({what}, {size:,} bytes)")
    return 0


async def generations_publish(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    job_id: str,
    body: GenerationPublish,
    wait: bool,
    timeout_s: float,
) -> int:
    published = await publish_generation(client, job_id, body)
    term.info(
        f"Published {published.pages} pages as build {published.build_id}: "
        f"deployment {published.deployment_id}"
    )
    if not wait:
        return 0
    deployment = await client.get_deployment(str(published.deployment_id))
    return await commands._follow_deployment(client, term, deployment, timeout_s)


# --- parsing -----------------------------------------------------------------------------------


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    generate = sub.add_parser(
        "generate",
        parents=[common],
        help="run a generation job from a spec file, following its progress",
        description="SPEC is a JSON or YAML job: `template`, `model`, `variables` (a matrix) or "
        "`rows`, `parameters`, `limits`, `group_by`; plus `project` and `rows_file` (a .jsonl or "
        ".csv file beside it, uploaded with the job). Follows the job live until it ends: exit 0 "
        "when it succeeded, 1 when it failed, ran out of budget or was cancelled. Ctrl-C stops "
        "following, not the job.",
    )
    generate.add_argument("spec", type=Path, metavar="SPEC", help="spec file (.json, .yaml)")
    generate.add_argument("--project", help="project name or id (default: the spec's `project`)")
    generate.add_argument(
        "--dry-run",
        action="store_true",
        help="render the first prompts and estimate tokens and cost; call no model, store nothing",
    )
    generate.add_argument(
        "--prompts",
        type=int,
        default=DEFAULT_PROMPTS,
        metavar="N",
        help="--dry-run: how many items' prompts to show (default: %(default)s)",
    )
    generate.add_argument("--base-url", help="the model server, replacing the spec's")
    generate.add_argument("--model", help="the model name, replacing the spec's")
    generate.add_argument("--no-follow", action="store_true", help="create the job and return")

    jobs = sub.add_parser(
        "generations",
        help="generation jobs: list, show, follow, cancel, export, publish",
        description="Jobs started by `launchdeck generate` (or a schedule).",
    )
    actions = jobs.add_subparsers(dest="generations_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="a project's jobs, newest first")
    listing.add_argument("--project", required=True, help="project name or id")
    listing.add_argument("-n", "--limit", type=int, default=20, help="at most (default: 20)")
    show = actions.add_parser("show", parents=[common], help="a job's totals and first items")
    show.add_argument("job_id", metavar="ID", help="the job's id")
    show.add_argument(
        "--items", type=int, default=5, metavar="N", help="items to show (default: 5; 0: none)"
    )
    show.add_argument("--failed", action="store_true", help="only failed items, with errors")
    show.add_argument("--json", action="store_true", help="the job as the API's JSON")
    follow_job = actions.add_parser(
        "follow", parents=[common], help="follow a job's progress live until it ends"
    )
    follow_job.add_argument("job_id", metavar="ID", help="the job's id")
    cancel = actions.add_parser("cancel", parents=[common], help="stop a job's new calls")
    cancel.add_argument("job_id", metavar="ID", help="the job's id")
    export = actions.add_parser(
        "export", parents=[common], help="download the results, or the per-group manifests"
    )
    export.add_argument("job_id", metavar="ID", help="the job's id")
    what = export.add_mutually_exclusive_group()
    what.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl", dest="fmt")
    what.add_argument(
        "--manifests", action="store_true", help="a zip of <group>/manifest.json files"
    )
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write (`-`: standard output; default: generation-<id>.<format>)",
    )
    publish = actions.add_parser(
        "publish",
        parents=[common],
        help="deploy the done items as a static site (one page each, an index per group)",
    )
    publish.add_argument("job_id", metavar="ID", help="the job's id")
    publish.add_argument("--project", help="deploy to this project (default: the job's)")
    publish.add_argument("--step", help="whose output is each page's Markdown (default: the last)")
    publish.add_argument("--no-follow", action="store_true", help="return once it is deploying")
    publish.add_argument(
        "--timeout",
        type=float,
        default=commands.DEFAULT_DEPLOY_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for the deployment (default: %(default)g)",
    )


def _spec_command(args: argparse.Namespace) -> ClientCommand:
    """Read the spec before connecting; its errors are one line, exit code 1."""
    try:
        spec = load_spec(args.spec, project=args.project, base_url=args.base_url, model=args.model)
    except SpecError as exc:
        message = str(exc)

        async def fail(_client: LaunchdeckClient, term: Terminal) -> int:
            term.error(message)
            return 1

        return fail
    prompts = max(1, min(args.prompts, 50))
    return lambda c, t: generate(
        c, t, spec=spec, dry=args.dry_run, prompts=prompts, wait=not args.no_follow
    )


def command(args: argparse.Namespace) -> ClientCommand:
    if args.command == "generate":
        return _spec_command(args)
    match args.generations_command:
        case "list":
            limit = max(1, min(args.limit, 200))
            return lambda c, t: generations_list(c, t, project=args.project, limit=limit)
        case "show":
            items = max(0, min(args.items, 200))
            return lambda c, t: generations_show(
                c, t, job_id=args.job_id, items=items, failed_only=args.failed, as_json=args.json
            )
        case "follow":
            return lambda c, t: follow(c, t, args.job_id)
        case "cancel":
            return lambda c, t: generations_cancel(c, t, job_id=args.job_id)
        case "export":
            fmt = None if args.manifests else args.fmt
            return lambda c, t: generations_export(
                c, t, job_id=args.job_id, fmt=fmt, output=args.output
            )
        case "publish":
            body = GenerationPublish(project=args.project, step=args.step)
            return lambda c, t: generations_publish(
                c, t, job_id=args.job_id, body=body, wait=not args.no_follow, timeout_s=args.timeout
            )
    raise AssertionError(f"unhandled generations action {args.generations_command}")
