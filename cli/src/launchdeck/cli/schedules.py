"""`launchdeck schedules create|list|delete|enable|disable`: cron schedules of a project.

    launchdeck schedules create blog --cron "0 3 * * *" --tz Europe/Paris --build
    launchdeck schedules create shop --cron "*/15 * * * *" --command "python manage.py sync"
    launchdeck schedules create shop --cron "0 * * * *" --http /cron/hourly
    launchdeck schedules create shop --cron "0 2 * * 1" --generation pages.json
    launchdeck schedules list shop
    launchdeck schedules disable 3f1c…

The parsers and the client calls live here; `main` registers them (`add_parsers`) and asks
`command(args)` for what to run.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.generation_spec import SpecError, inline_rows, load_spec
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import (
    BuildAction,
    CommandAction,
    GenerationAction,
    HttpAction,
    ScheduleAction,
    ScheduleCreate,
    ScheduleOut,
    ScheduleUpdate,
)

ClientCommand = Callable[[LaunchdeckClient, Terminal], Awaitable[int]]
NAME_CHARS = 100  # ScheduleName's max_length

# --- client calls ------------------------------------------------------------------------------


async def create_schedule(
    client: LaunchdeckClient, project: str, body: ScheduleCreate
) -> ScheduleOut:
    path = f"/api/v1/projects/{quote(project, safe='')}/schedules"
    return await client._call(ScheduleOut, "POST", path, body=body)


def list_schedules(
    client: LaunchdeckClient, project: str, page_size: int | None = None
) -> AsyncIterator[ScheduleOut]:
    return client._pages(
        ScheduleOut, f"/api/v1/projects/{quote(project, safe='')}/schedules", page_size
    )


async def update_schedule(
    client: LaunchdeckClient, schedule_id: str, body: ScheduleUpdate
) -> ScheduleOut:
    path = f"/api/v1/schedules/{quote(schedule_id, safe='')}"
    return await client._call(ScheduleOut, "PATCH", path, body=body)


async def delete_schedule(client: LaunchdeckClient, schedule_id: str) -> None:
    await client._send("DELETE", f"/api/v1/schedules/{quote(schedule_id, safe='')}")


# --- commands ----------------------------------------------------------------------------------


def describe(action: ScheduleAction) -> str:
    """The action in a few words: `build main`, `run python manage.py x`, `POST /cron`."""
    match action:
        case BuildAction():
            deploy = "" if action.deploy else " (no deploy)"
            return f"build {action.ref or '(branch)'}{deploy}"
        case CommandAction():
            return f"run {action.command}"
        case HttpAction():
            return f"{action.method} {action.path}"
        case GenerationAction():
            return f"generate {action.spec.template}"
    raise AssertionError(action)  # pragma: no cover


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


async def schedules_create(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    project: str,
    name: str | None,
    cron: str,
    timezone: str,
    action: ScheduleAction,
    enabled: bool,
) -> int:
    body = ScheduleCreate(
        name=name or describe(action)[:NAME_CHARS],
        cron=cron,
        timezone=timezone,
        action=action,
        enabled=enabled,
    )
    made = await create_schedule(client, project, body)
    when = f"next {_when(made.next_run_at)} UTC" if made.next_run_at else "disabled"
    term.success(f"Schedule {made.name!r} ({made.cron} {made.timezone}): {describe(made.action)}")
    term.info(f"  id {made.id}, {when}")
    return 0


async def schedules_list(
    client: LaunchdeckClient, term: Terminal, *, project: str, limit: int
) -> int:
    rows: list[tuple[str, ...]] = [
        ("ID", "NAME", "CRON", "TZ", "ACTION", "NEXT (UTC)", "LAST (UTC)", "OUTCOME")
    ]
    async for s in list_schedules(client, project, page_size=limit):
        outcome = s.last_outcome.status if s.last_outcome else "-"
        rows.append(
            (
                str(s.id),
                s.name,
                s.cron,
                s.timezone,
                describe(s.action),
                _when(s.next_run_at) if s.enabled else "disabled",
                _when(s.last_run_at),
                outcome,
            )
        )
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info("No schedules.")
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0


async def schedules_enable(
    client: LaunchdeckClient, term: Terminal, *, schedule_id: str, enabled: bool
) -> int:
    changed = await update_schedule(client, schedule_id, ScheduleUpdate(enabled=enabled))
    if enabled:
        term.success(f"Enabled {changed.name!r}: next {_when(changed.next_run_at)} UTC")
    else:
        term.success(f"Disabled {changed.name!r}")
    return 0


async def schedules_delete(client: LaunchdeckClient, term: Terminal, *, schedule_id: str) -> int:
    await delete_schedule(client, schedule_id)
    term.success(f"Deleted schedule {schedule_id}")
    return 0


# --- parsing -----------------------------------------------------------------------------------


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    schedules = sub.add_parser(
        "schedules",
        help="cron schedules: builds, commands, HTTP calls",
        description="Five-field cron expressions (minute hour day-of-month month day-of-week) in "
        "a time zone. A tick missed while no control-api ran is made once, not once per tick.",
    )
    actions = schedules.add_subparsers(dest="schedules_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[common], help="schedule something")
    create.add_argument("project", help="project name or id")
    create.add_argument("--cron", required=True, help='e.g. "*/15 * * * *" or "0 3 * * 1-5"')
    create.add_argument(
        "--tz", dest="timezone", default="UTC", help="IANA time zone (default: UTC)"
    )
    create.add_argument("--name", help="unique in the project (default: what it does)")
    what = create.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--build",
        nargs="?",
        const="",
        metavar="REF",
        help="build and deploy REF (default: the project branch)",
    )
    # Not `args.command`: that is the top-level COMMAND (`schedules`).
    what.add_argument("--command", dest="run_command", help="run this command in the live release")
    what.add_argument("--http", metavar="PATH", help="call this path of the live app")
    what.add_argument(
        "--generation",
        type=Path,
        metavar="SPEC",
        help="start a generation job from this spec (as `launchdeck generate` reads it; a "
        "rows file is read now and kept in the schedule)",
    )
    create.add_argument("--no-deploy", action="store_true", help="--build: build only")
    create.add_argument(
        "--method", choices=("POST", "GET"), default="POST", help="--http (default: POST)"
    )
    create.add_argument(
        "--timeout", type=int, metavar="SECONDS", help="--command (600) or --http (30)"
    )
    create.add_argument(
        "--allow-overlap",
        action="store_true",
        help="--command/--generation: start even while the previous one is still going",
    )
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    listing = actions.add_parser("list", parents=[common], help="a project's schedules")
    listing.add_argument("project", help="project name or id")
    listing.add_argument("-n", "--limit", type=int, default=100, help="at most (default: 100)")
    for name, text in (
        ("delete", "delete a schedule"),
        ("enable", "enable a schedule (its next tick from now)"),
        ("disable", "disable a schedule"),
    ):
        one = actions.add_parser(name, parents=[common], help=text)
        one.add_argument("schedule_id", metavar="ID", help="the schedule's id (`schedules list`)")


def action_from(args: argparse.Namespace) -> ScheduleAction:
    if args.generation is not None:
        # The schedule's project is the job's: the spec's own `project` is not asked for.
        spec = load_spec(args.generation, project=args.project)
        return GenerationAction(spec=inline_rows(spec), allow_overlap=args.allow_overlap)
    if args.build is not None:
        return BuildAction(ref=args.build or None, deploy=not args.no_deploy)
    if args.run_command is not None:
        return CommandAction(
            command=args.run_command,
            timeout_s=args.timeout or 600,
            allow_overlap=args.allow_overlap,
        )
    return HttpAction(path=args.http, method=args.method, timeout_s=args.timeout or 30)


def command(args: argparse.Namespace) -> ClientCommand:
    match args.schedules_command:
        case "create":
            try:
                action = action_from(args)
            except SpecError as exc:
                message = str(exc)

                async def fail(_client: LaunchdeckClient, term: Terminal) -> int:
                    term.error(message)
                    return 1

                return fail
            return lambda c, t: schedules_create(
                c,
                t,
                project=args.project,
                name=args.name,
                cron=args.cron,
                timezone=args.timezone,
                action=action,
                enabled=not args.disabled,
            )
        case "list":
            limit = max(1, min(args.limit, 200))
            return lambda c, t: schedules_list(c, t, project=args.project, limit=limit)
        case "delete":
            return lambda c, t: schedules_delete(c, t, schedule_id=args.schedule_id)
        case "enable" | "disable":
            enabled = args.schedules_command == "enable"
            return lambda c, t: schedules_enable(
                c, t, schedule_id=args.schedule_id, enabled=enabled
            )
    raise AssertionError(f"unhandled schedules action {args.schedules_command}")
