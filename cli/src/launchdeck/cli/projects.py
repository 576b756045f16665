"""`launchdeck projects create|list|show|update`: a project's repository, build settings and, for
container apps, its resources.

    launchdeck projects create blog https://github.com/me/blog.git --output-dir public
    launchdeck projects create api ./api --dockerfile docker/Dockerfile --memory 256 --cpus 0.5
    launchdeck projects update api --memory 512 --build-arg NODE_ENV
    launchdeck projects show api

The API replaces `build` and `resources` as a whole on PATCH; `update` reads the project first
and sends what it has with the options given changed, so an option left out keeps its value.
The parsers live here; `main` registers them (`add_parsers`) and asks `command(args)` for what
to run.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import (
    BuildSettings,
    ProjectCreate,
    ProjectOut,
    ProjectResources,
    ProjectUpdate,
)

ClientCommand = Callable[[LaunchdeckClient, Terminal], Awaitable[int]]

# Options that set a build setting: (option, BuildSettings field, metavar, help).
_BUILD_OPTIONS = (
    ("--root-dir", "root_dir", "PATH", "directory of the app inside the repository"),
    ("--install-command", "install_command", "COMMAND", "install command override"),
    ("--build-command", "build_command", "COMMAND", "build command override"),
    ("--output-dir", "output_dir", "PATH", "directory of the built static site"),
    (
        "--dockerfile",
        "dockerfile",
        "PATH",
        "the Dockerfile, relative to the root dir (a container app)",
    ),
)


def _repo_argument(repo_url: str) -> str:
    """A local directory given as a relative path becomes absolute: the worker clones it."""
    if "://" in repo_url or repo_url.startswith("git@"):
        return repo_url
    path = Path(repo_url).expanduser()
    return str(path.resolve()) if path.exists() else repo_url


def describe_resources(resources: ProjectResources) -> str:
    """`256 MiB memory, 0.5 CPUs`; what is unset is the platform's default."""
    parts = []
    if resources.memory_mb is not None:
        parts.append(f"{resources.memory_mb} MiB memory")
    if resources.cpus is not None:
        parts.append(f"{resources.cpus:g} CPU{'' if resources.cpus == 1 else 's'}")
    return ", ".join(parts) or "platform defaults"


def short_resources(resources: ProjectResources) -> str:
    """`memory=256MiB,cpus=0.5` for a table cell (no spaces); `-` when nothing is set."""
    parts = []
    if resources.memory_mb is not None:
        parts.append(f"memory={resources.memory_mb}MiB")
    if resources.cpus is not None:
        parts.append(f"cpus={resources.cpus:g}")
    return ",".join(parts) or "-"


def describe_build(build: BuildSettings) -> str:
    """The build settings that are set, as `name=value` pairs (`build_args` comma-joined)."""
    settings = msgspec.to_builtins(build)
    return " ".join(
        f"{name}={','.join(value) if isinstance(value, list) else value}"
        for name, value in settings.items()
    )


def _details(project: ProjectOut) -> list[str]:
    """The lines under a project's name: what it builds from, and what is set."""
    lines = [
        f"  repo       {project.repo_url}",
        f"  branch     {project.branch}",
    ]
    if project.domains:
        lines.append(f"  domains    {', '.join(project.domains)}")
    if project.build != BuildSettings():
        lines.append(f"  build      {describe_build(project.build)}")
    if project.resources != ProjectResources():
        lines.append(f"  resources  {describe_resources(project.resources)}")
    return lines


# --- commands ----------------------------------------------------------------------------------


async def projects_create(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    name: str,
    repo_url: str,
    branch: str | None,
    build: BuildSettings,
    domains: list[str],
    resources: ProjectResources,
) -> int:
    body = ProjectCreate(
        name=name,
        repo_url=_repo_argument(repo_url),
        branch=branch or "main",
        build=build,
        domains=domains,
    )
    if resources != ProjectResources():
        # Only then: the field's own default is left out of the body, an equal one would not
        # be (and an older API knows no `resources`).
        body = msgspec.structs.replace(body, resources=resources)
    project = await client.create_project(body)
    term.success(f"Created project {project.name} ({project.id})")
    for line in _details(project):
        term.info(line)
    term.info(f"  webhook secret (shown once): {project.webhook_secret}")
    term.info(f"Deploy it with: launchdeck deploy {project.name}")
    return 0


async def projects_list(client: LaunchdeckClient, term: Terminal) -> int:
    projects = await client.list_projects()
    if not projects:
        term.info("No projects yet. Create one with: launchdeck projects create NAME REPO_URL")
        return 0
    header = ["NAME", "BRANCH", "ID", "REPO"]
    rows = [[p.name, p.branch, str(p.id), p.repo_url] for p in projects]
    if any(p.resources != ProjectResources() for p in projects):
        header.insert(3, "RESOURCES")
        for row, project in zip(rows, projects, strict=True):
            row.insert(3, short_resources(project.resources))
    for line in table([header, *rows]):
        term.info(line)
    return 0


async def projects_show(client: LaunchdeckClient, term: Terminal, *, project: str) -> int:
    shown = await client.get_project(project)
    term.info(f"{shown.name} ({shown.id})")
    for line in _details(shown):
        term.info(line)
    return 0


async def projects_update(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    project: str,
    branch: str | None,
    build_changes: dict[str, Any],
    resource_changes: dict[str, Any],
    reset_resources: bool = False,
) -> int:
    """Change what the options say and keep the rest: `build` and `resources` are read, changed
    and sent whole (the API replaces each as a whole)."""
    if branch is None and not build_changes and not resource_changes and not reset_resources:
        term.error("nothing to change: give an option such as --memory, --cpus or --dockerfile")
        return 1
    current = await client.get_project(project)
    body = ProjectUpdate()
    if branch is not None:
        body = msgspec.structs.replace(body, branch=branch)
    if build_changes:
        build = msgspec.structs.replace(current.build, **build_changes)
        body = msgspec.structs.replace(body, build=build)
    if resource_changes or reset_resources:
        base = ProjectResources() if reset_resources else current.resources
        resources = msgspec.structs.replace(base, **resource_changes)
        body = msgspec.structs.replace(body, resources=resources)
    updated = await client.update_project(project, body)
    term.success(f"Updated project {updated.name}")
    for line in _details(updated):
        term.info(line)
    if updated.resources != current.resources:
        term.info(
            "The next deployment applies the new resources; the running app keeps its own "
            f"until then: launchdeck redeploy {updated.name}"
        )
    return 0


# --- parsers -----------------------------------------------------------------------------------


def _add_settings_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    """The options of create and update: build settings and a container app's resources."""
    parser.add_argument(
        "--branch", help="branch to deploy" + (" (default: main)" if creating else "")
    )
    for option, _, metavar, help_text in _BUILD_OPTIONS:
        parser.add_argument(option, metavar=metavar, help=help_text)
    parser.add_argument(
        "--build-arg",
        action="append",
        dest="build_args",
        metavar="NAME",
        help="a `build` env var also given to the Dockerfile as a build argument (visible in "
        "the image's history: not for secrets; repeatable)",
    )
    resources = parser.add_argument_group("resources of a container app")
    resources.add_argument(
        "--memory", type=int, metavar="MB", help="memory limit in MiB (the app is killed past it)"
    )
    resources.add_argument("--cpus", type=float, metavar="N", help="CPUs (fractions allowed)")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    projects = sub.add_parser("projects", help="create, list, show and change projects")
    actions = projects.add_subparsers(dest="projects_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", parents=[common], help="create a project")
    create.add_argument("name", help="project name: a slug such as my-site")
    create.add_argument("repo_url", help="git URL (or a local path when the worker allows it)")
    _add_settings_options(create, creating=True)
    create.add_argument(
        "--domain",
        action="append",
        default=[],
        dest="domains",
        metavar="DOMAIN",
        help="extra domain served by this project (repeatable)",
    )
    actions.add_parser("list", parents=[common], help="list projects")
    show = actions.add_parser("show", parents=[common], help="a project's settings")
    show.add_argument("project", help="project name or id")
    update = actions.add_parser(
        "update",
        parents=[common],
        help="change a project's branch, build settings or resources",
        description="Options left out keep their value. New resources apply from the next "
        "deployment (launchdeck redeploy PROJECT applies them now).",
    )
    update.add_argument("project", help="project name or id")
    _add_settings_options(update, creating=False)
    update.add_argument(
        "--reset-resources",
        action="store_true",
        help="back to the platform's defaults (then --memory/--cpus, if given)",
    )


def _build_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {f: getattr(args, f) for _, f, _, _ in _BUILD_OPTIONS if getattr(args, f) is not None}
    if args.build_args:
        changes["build_args"] = args.build_args
    return changes


def _resource_changes(args: argparse.Namespace) -> dict[str, Any]:
    given = {"memory_mb": args.memory, "cpus": args.cpus}
    return {name: value for name, value in given.items() if value is not None}


def command(args: argparse.Namespace) -> ClientCommand:
    match args.projects_command:
        case "create":
            return lambda c, t: projects_create(
                c,
                t,
                name=args.name,
                repo_url=args.repo_url,
                branch=args.branch,
                build=BuildSettings(**_build_changes(args)),
                domains=args.domains,
                resources=ProjectResources(**_resource_changes(args)),
            )
        case "show":
            return lambda c, t: projects_show(c, t, project=args.project)
        case "update":
            return lambda c, t: projects_update(
                c,
                t,
                project=args.project,
                branch=args.branch,
                build_changes=_build_changes(args),
                resource_changes=_resource_changes(args),
                reset_resources=args.reset_resources,
            )
    return projects_list
