"""`launchdeck run PROJECT -- CMD…` and `launchdeck runs PROJECT`: one-off commands in the
project's live production release.

`run` starts the run, prints its log as it comes (polling `GET /api/v1/runs/{id}/logs` for the
lines after the last one shown) until the run has finished and its log is complete, and exits
with the command's own exit code (1 when it failed without one: a timeout, no live release).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Sequence

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import RunCreate, RunOut
from launchdeck.contracts.statuses import RUN_FINISHED

POLL_INTERVAL_S = 0.5
DEFAULT_RUN_TIMEOUT_S = 600


def split_words(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """What follows the project: (options before `--`, the command after it). Without
    options first, all of it is the command (argparse has removed a `--` right after the
    project, so a later one is the command's own: `-- git log -- README`)."""
    parts = list(words)
    if parts and parts[0].startswith("-") and parts[0] != "--" and "--" in parts:
        at = parts.index("--")
        return parts[:at], parts[at + 1 :]
    if parts and parts[0] == "--":
        return [], parts[1:]
    return [], parts


def command_line(parts: Sequence[str]) -> str:
    """The shell line to run: one word is taken as written (`'echo $HOME && ls'`); several are
    quoted so each stays one word (`-- python manage.py clearsessions`)."""
    if len(parts) == 1:
        return parts[0]
    return shlex.join(list(parts))


def exit_code_of(run: RunOut) -> int:
    if run.status == "succeeded":
        return 0
    if run.exit_code is not None and run.exit_code > 0:
        return min(run.exit_code, 255)
    return 1


async def run(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    project: str,
    command: str,
    timeout_s: int,
    wait: bool = True,
) -> int:
    started = await client.start_run(project, RunCreate(command=command, timeout_s=timeout_s))
    term.info(f"Run {started.id} queued: {command}")
    if not wait:
        return 0
    return await follow(client, term, str(started.id))


async def follow(client: LaunchdeckClient, term: Terminal, run_id: str) -> int:
    """Print the run's log until it has finished; its exit code."""
    shown = 0
    while True:
        current = await client.get_run(run_id)
        # Read after the status: once the run is seen finished, this read is its whole log
        # (the API waits a moment for the log's end, which travels apart from the status).
        for record in await client.run_log_records(run_id, after_seq=shown):
            term.log_line(record.stream, record.line)
            shown = record.seq
        if current.status in RUN_FINISHED:
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    if current.status == "succeeded":
        term.success(f"Run {run_id} succeeded")
    else:
        term.error(f"run {current.status}: {current.error or 'see the log above'}")
    return exit_code_of(current)


async def runs_list(client: LaunchdeckClient, term: Terminal, *, project: str, limit: int) -> int:
    """The project's latest runs, newest first."""
    rows: list[tuple[str, ...]] = [("STATUS", "EXIT", "CREATED", "ID", "COMMAND", "ERROR")]
    async for r in client.runs(project, page_size=limit):
        exit_code = "-" if r.exit_code is None else str(r.exit_code)
        created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
        rows.append((r.status, exit_code, created, str(r.id), r.command, r.error or ""))
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info(f"No runs yet. Start one with: launchdeck run {project} -- COMMAND")
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0
