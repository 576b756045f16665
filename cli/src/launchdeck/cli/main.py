"""`launchdeck` command line: argument parsing and dispatch; the work is in `commands` and `dev`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TextIO

from launchdeck.cli import (
    commands,
    generations,
    projects,
    runs,
    schedules,
    templates,
    tokens,
    webhooks,
)
from launchdeck.cli.client import ApiError, ApiUnreachable, LaunchdeckClient, UnexpectedResponse
from launchdeck.cli.config import ClientConfig, ConfigError, resolve_config
from launchdeck.cli.output import Terminal
from launchdeck.contracts.api import ENV_TARGETS

DESCRIPTION = """\
Launchdeck: deploy git repositories to a self-hosted platform.

Run `launchdeck dev` to start the whole platform locally; the other commands talk to its API
(found through --api-url/--token, LAUNCHDECK_API_URL/LAUNCHDECK_TOKEN, or the dev.json that
`launchdeck dev` writes in LAUNCHDECK_STATE_DIR, default ./.launchdeck)."""

EXAMPLES = """\
examples:
  launchdeck dev
  launchdeck projects create blog https://github.com/me/blog.git --output-dir public
  launchdeck projects update api --dockerfile Dockerfile --memory 256 --cpus 0.5
  launchdeck projects show api
  launchdeck deploy blog --ref main
  launchdeck builds blog
  launchdeck logs blog -f          (the latest build; or blog#12, or a build id)
  launchdeck logs blog --app -f    (the running app's output, live)
  launchdeck cancel blog#12        (or a build id, or blog: its latest build)
  launchdeck deployments blog
  launchdeck rollback blog
  launchdeck env set blog API_TOKEN s3cret --target build --target production
  launchdeck env list blog
  launchdeck redeploy blog         (the live build again, with the current env vars)
  launchdeck webhook-secret rotate blog   (a new secret and the push webhook URLs)
  launchdeck run blog -- python manage.py clearsessions   (once, in the live release)
  launchdeck runs blog
  launchdeck tokens create ci --scope deploy --project blog --expires-in 86400
  launchdeck tokens list
  launchdeck tokens revoke TOKEN_ID
  launchdeck audit --project blog
  launchdeck templates create pages.json
  launchdeck templates render pages --var business=Joe --var city=Lyon
  launchdeck generate examples/local-business/spec.json --dry-run
  launchdeck generate spec.yaml --base-url http://gpu-box:11434   (follows it live)
  launchdeck generations list --project pages
  launchdeck generations export JOB_ID --format parquet
  launchdeck generations publish JOB_ID"""


def _connection_options() -> argparse.ArgumentParser:
    # SUPPRESS lets the options be given before or after the sub-command.
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--api-url", default=argparse.SUPPRESS, help="control-api base URL (env LAUNCHDECK_API_URL)"
    )
    group.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (env LAUNCHDECK_TOKEN)"
    )
    return common


def _add_timeout(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=commands.DEFAULT_DEPLOY_TIMEOUT_S,
        metavar="SECONDS",
        help=help_text + " (default: %(default)g)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=int,
        default=runs.DEFAULT_RUN_TIMEOUT_S,
        metavar="SECONDS",
        help="stop it after this long (default: %(default)s)",
    )
    parser.add_argument("--no-wait", action="store_true", help="start it and return at once")


def _run_words(args: argparse.Namespace) -> str:
    """`launchdeck run` options given after the project (before `--`) apply too; the rest is
    the command."""
    options, words = runs.split_words(args.words)
    if options:
        again = argparse.ArgumentParser(prog="launchdeck run", add_help=False)
        _add_run_options(again)
        again.parse_args(options, namespace=args)
    line = runs.command_line(words)
    if not line:
        raise SystemExit("launchdeck run: give the command after --")
    return line


def build_parser() -> argparse.ArgumentParser:
    common = _connection_options()
    parser = argparse.ArgumentParser(
        prog="launchdeck",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    dev = sub.add_parser(
        "dev",
        help="run the whole platform locally (what `make dev` runs)",
        description="Start Postgres, NATS, the four services and Caddy on free ports, deploy "
        "the bundled example and print the URLs. Ctrl-C stops everything.",
    )
    dev.add_argument(
        "--no-example", action="store_true", help="do not deploy the bundled example site"
    )

    projects.add_parsers(sub, common)

    deploy = sub.add_parser(
        "deploy",
        parents=[common],
        help="build and deploy a project, following the log",
        description="Trigger a build, print its log live, wait until the deployment is "
        "active and print its URL. Exits non-zero when the build or the deployment fails.",
    )
    deploy.add_argument("project", help="project name or id")
    deploy.add_argument("--ref", help="branch, tag or commit (default: the project branch)")
    deploy.add_argument(
        "--no-wait", action="store_true", help="trigger the build and return at once"
    )
    _add_timeout(deploy, "how long to wait for the deployment after the build")

    for name in ("builds", "deployments"):
        history = sub.add_parser(
            name, parents=[common], help=f"list a project's latest {name}, newest first"
        )
        history.add_argument("project", help="project name or id")
        history.add_argument(
            "-n", "--limit", type=int, default=20, help="how many to show (default: 20)"
        )

    logs = sub.add_parser(
        "logs", parents=[common], help="print a build's log (or, with --app, a running app's)"
    )
    logs.add_argument(
        "build",
        help="build id, or a project name (its latest build), or <project>#<number>; "
        "with --app: the project",
    )
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="stream the log live until the build ends (with --app: until Ctrl-C)",
    )
    logs.add_argument(
        "--app",
        action="store_true",
        help="the running app's output (every deployment and process) instead of a build's",
    )
    logs.add_argument(
        "-n",
        "--tail",
        type=int,
        default=commands.DEFAULT_APP_LOG_TAIL,
        metavar="LINES",
        help="with --app: how many recent lines first (default: %(default)s)",
    )

    cancel = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel a queued or running build",
        description="A queued build never runs; a running one is stopped (all its processes) "
        "and ends cancelled. Waits until it has, unless --no-wait.",
    )
    cancel.add_argument(
        "build", help="build id, or a project name (its latest build), or <project>#<number>"
    )
    cancel.add_argument("--no-wait", action="store_true", help="return once it is asked for")
    cancel.add_argument(
        "--timeout",
        type=float,
        default=commands.DEFAULT_CANCEL_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for a running build to stop (default: %(default)g)",
    )

    rollback = sub.add_parser(
        "rollback", parents=[common], help="re-activate the previous production deployment"
    )
    rollback.add_argument("project", help="project name or id")
    _add_timeout(rollback, "how long to wait")

    redeploy = sub.add_parser(
        "redeploy",
        parents=[common],
        help="deploy the live build again (no rebuild), with the current env vars",
    )
    redeploy.add_argument("project", help="project name or id")
    _add_timeout(redeploy, "how long to wait")

    env = sub.add_parser(
        "env",
        help="a project's env vars (values are encrypted and never shown again)",
        description="Env vars reach builds (target build) and running apps (preview, "
        "production). Changing one restarts nothing: `launchdeck redeploy PROJECT` does.",
    )
    env_sub = env.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    env_set = env_sub.add_parser("set", parents=[common], help="set (create or replace) a var")
    env_set.add_argument("project", help="project name or id")
    env_set.add_argument("key", help="name, e.g. API_TOKEN ([A-Z_][A-Z0-9_]*)")
    env_set.add_argument(
        "value",
        nargs="?",
        help="the value; left out, it is read from standard input (prompted for on a "
        "terminal), which keeps it out of the shell history and the process list",
    )
    env_set.add_argument(
        "--target",
        action="append",
        choices=ENV_TARGETS,
        dest="targets",
        help="where it is given (repeatable; default: build, preview and production)",
    )
    env_unset = env_sub.add_parser("unset", parents=[common], help="remove a var")
    env_unset.add_argument("project", help="project name or id")
    env_unset.add_argument("key", help="its name")
    env_list = env_sub.add_parser("list", parents=[common], help="list a project's vars")
    env_list.add_argument("project", help="project name or id")

    webhook = sub.add_parser(
        "webhook-secret",
        help="a project's git webhook secret",
        description="Pushes reach a project through its webhook URLs, signed with its webhook "
        "secret. `rotate` replaces the secret (the old one stops working at once) and prints "
        "the new one, once, with the URLs to give the git host.",
    )
    webhook_sub = webhook.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    webhook_rotate = webhook_sub.add_parser(
        "rotate", parents=[common], help="make a new secret and print it with the hook URLs"
    )
    webhook_rotate.add_argument("project", help="project name or id")

    run_cmd = sub.add_parser(
        "run",
        parents=[common],
        help="run a command once in the project's live production release",
        description="Run COMMAND once in the live production release (its sandbox and "
        "production env vars), print its output until it ends, and exit with its exit code. "
        "One word is run as a shell line as written ('echo $HOME && ls'); several are quoted "
        "word by word.",
    )
    run_cmd.add_argument("project", help="project name or id")
    run_cmd.add_argument(
        "words", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="what to run"
    )
    _add_run_options(run_cmd)
    runs_cmd = sub.add_parser("runs", parents=[common], help="list a project's latest runs")
    runs_cmd.add_argument("project", help="project name or id")
    runs_cmd.add_argument(
        "-n", "--limit", type=int, default=20, help="how many to show (default: 20)"
    )
    _add_token_parsers(sub, common)
    schedules.add_parsers(sub, common)
    templates.add_parsers(sub, common)
    generations.add_parsers(sub, common)
    return parser


def _add_token_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """`tokens create|list|revoke` and `audit` (the work is in `tokens`)."""
    tokens_cmd = sub.add_parser(
        "tokens",
        help="API tokens (admin)",
        description="Tokens are `admin`, or some of read/deploy/write on one project. The value "
        "is printed once, alone on stdout; revoking takes effect within about a second.",
    )
    tokens_sub = tokens_cmd.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)
    create = tokens_sub.add_parser("create", parents=[common], help="make a token")
    create.add_argument("name", help="what it is for (shown in listings and the audit log)")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        choices=tokens.SCOPES,
        help="admin, or read/deploy/write (repeat for several)",
    )
    create.add_argument("--project", help="project name or id (required unless admin)")
    create.add_argument(
        "--expires-in", type=int, metavar="SECONDS", help="expire after this long (default: never)"
    )
    listing = tokens_sub.add_parser("list", parents=[common], help="list tokens (no values)")
    listing.add_argument("-n", "--limit", type=int, default=100, help="at most (default: 100)")
    revoke = tokens_sub.add_parser("revoke", parents=[common], help="revoke a token")
    revoke.add_argument("token_id", metavar="ID", help="the token's id (from `tokens list`)")
    audit = sub.add_parser(
        "audit", parents=[common], help="who did what, newest first (admin, or a project's writers)"
    )
    audit.add_argument("--project", help="only this project (name or id)")
    audit.add_argument("-n", "--limit", type=int, default=50, help="at most (default: 50)")


def read_value(stdin: TextIO | None = None) -> str:
    """An env var's value from standard input: prompted for (not echoed) on a terminal, else
    the whole input without its final newline (`launchdeck env set p KEY < key.pem`)."""
    stream = sys.stdin if stdin is None else stdin
    if stream.isatty():
        return getpass.getpass("value (not echoed): ")
    text = stream.read()
    return text[:-1] if text.endswith("\n") else text


ClientCommand = Callable[[LaunchdeckClient, Terminal], Awaitable[int]]
HISTORY = {"builds": commands.builds_list, "deployments": commands.deployments_list}


def _client_command(args: argparse.Namespace) -> ClientCommand:
    match args.command:
        case "projects":
            return projects.command(args)
        case "deploy":
            return lambda c, t: commands.deploy(
                c,
                t,
                project=args.project,
                ref=args.ref,
                wait=not args.no_wait,
                timeout_s=args.timeout,
            )
        case "builds" | "deployments":
            history = HISTORY[args.command]
            limit = max(1, min(args.limit, 100))  # one page at most
            return lambda c, t: history(c, t, project=args.project, limit=limit)
        case "logs" if args.app:
            tail = max(0, min(args.tail, 10_000))
            return lambda c, t: commands.app_logs(
                c, t, project=args.build, follow=args.follow, tail=tail
            )
        case "logs":
            return lambda c, t: commands.logs(c, t, build=args.build, follow=args.follow)
        case "cancel":
            return lambda c, t: commands.cancel(
                c, t, build=args.build, wait=not args.no_wait, timeout_s=args.timeout
            )
        case "rollback":
            return lambda c, t: commands.rollback(
                c, t, project=args.project, timeout_s=args.timeout
            )
        case "redeploy":
            return lambda c, t: commands.redeploy(
                c, t, project=args.project, timeout_s=args.timeout
            )
        case "env" if args.env_command == "set":
            value = args.value if args.value is not None else read_value()
            return lambda c, t: commands.env_set(
                c, t, project=args.project, key=args.key, value=value, targets=args.targets
            )
        case "env" if args.env_command == "unset":
            return lambda c, t: commands.env_unset(c, t, project=args.project, key=args.key)
        case "env":
            return lambda c, t: commands.env_list(c, t, project=args.project)
        case "run":
            line = _run_words(args)
            return lambda c, t: runs.run(
                c,
                t,
                project=args.project,
                command=line,
                timeout_s=args.timeout,
                wait=not args.no_wait,
            )
        case "runs":
            limit = max(1, min(args.limit, 100))
            return lambda c, t: runs.runs_list(c, t, project=args.project, limit=limit)
        case "webhook-secret":
            return lambda c, t: webhooks.rotate_secret(c, t, project=args.project)
        case "tokens" if args.tokens_command == "create":
            return lambda c, t: tokens.tokens_create(
                c,
                t,
                name=args.name,
                scopes=args.scopes,
                project=args.project,
                expires_in=args.expires_in,
            )
        case "tokens" if args.tokens_command == "list":
            limit = max(1, min(args.limit, 200))
            return lambda c, t: tokens.tokens_list(c, t, limit=limit)
        case "tokens":
            return lambda c, t: tokens.tokens_revoke(c, t, token_id=args.token_id)
        case "schedules":
            return schedules.command(args)
        case "templates":
            return templates.command(args)
        case "generate" | "generations":
            return generations.command(args)
        case "audit":
            limit = max(1, min(args.limit, 200))
            return lambda c, t: tokens.audit(c, t, project=args.project, limit=limit)
    raise AssertionError(f"unhandled command {args.command}")


async def _run_client(config: ClientConfig, command: ClientCommand, term: Terminal) -> int:
    async with LaunchdeckClient(config.api_url, config.token) as client:
        return await command(client, term)


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse `argv`, run the command, return the exit code (errors are printed, not raised)."""
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    if args.command == "dev":
        from launchdeck.cli.dev import DevOptions, run_dev

        return asyncio.run(run_dev(DevOptions(deploy_example=not args.no_example)))

    term = Terminal()
    try:
        config = resolve_config(
            api_url=getattr(args, "api_url", None),
            token=getattr(args, "token", None),
            environ=env,
        )
    except ConfigError as exc:
        term.error(str(exc))
        return 1
    try:
        return asyncio.run(_run_client(config, _client_command(args), term))
    except ApiError as exc:
        term.problem(exc)
        return 1
    except ApiUnreachable as exc:
        hint = " (is `launchdeck dev` running?)" if config.api_url_source.endswith(".json") else ""
        term.error(f"{exc}{hint}")
        return 1
    except UnexpectedResponse as exc:
        term.error(f"{exc} (is {config.api_url} a Launchdeck API of this version?)")
        return 1
    except KeyboardInterrupt:
        return 130


def main() -> None:
    try:
        sys.exit(run())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
