"""control-api entry point: `launchdeck-control-api [serve|migrate|token]`.

`serve` (the default) opens Postgres (migrating it first unless LAUNCHDECK_MIGRATE_ON_START is
false), connects to NATS and provisions JetStream, then serves HTTP with the outbox relay, the
events consumer, the abandoned-jobs watcher and the log sweeper running alongside, until
SIGTERM/SIGINT. `migrate` applies the migrations and exits. `token --admin [--expires-in S]`
prints a new admin API token signed with LAUNCHDECK_SECRET_KEY.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from launchdeck.contracts.subjects import SERVICE_CONTROL_API
from launchdeck.control_api.app import BACKGROUND, create_app
from launchdeck.control_api.auth import ADMIN
from launchdeck.control_api.migrate import MIGRATIONS_DIR, migrate_database
from launchdeck.control_api.settings import Settings
from launchdeck.libs import db
from launchdeck.libs.jetstream import connect, disconnect, provision
from launchdeck.libs.logging import configure, get_logger
from launchdeck.libs.runner import run_service
from launchdeck.libs.settings import SettingsError, env_str
from launchdeck.libs.tokens import mint

SERVICE = "control-api"
log = get_logger(__name__)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    pool = await db.create_pool(settings.database_url)
    try:
        if settings.migrate_on_start:
            async with pool.acquire() as conn:
                await db.migrate(conn, MIGRATIONS_DIR)
        nc = await connect(settings.nats_url, name=SERVICE_CONTROL_API)
        try:
            js = nc.jetstream()
            await provision(js)
            app = create_app(settings, pool, nc, js)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.host, settings.port).start()
                log.info("listening", url=f"http://{settings.host}:{settings.port}")
                failure = await _until_stopped(stop, app[BACKGROUND])
            finally:
                # Stops accepting, lets in-flight requests finish, closes WebSockets, then
                # cancels the background tasks (the outbox keeps whatever is not yet sent).
                await runner.cleanup()
        finally:
            await disconnect(nc)
    finally:
        await pool.close()
    if failure is not None:
        raise failure


async def _until_stopped(
    stop: asyncio.Event, tasks: list[asyncio.Task[None]]
) -> BaseException | None:
    """Wait for `stop` or for a background task to end; return the failure if one ended."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for task in done:
        if task is not stopper:
            error = task.exception()
            log.error("background_task_ended", task=task.get_name(), error=repr(error))
            return error or RuntimeError(f"{task.get_name()} ended unexpectedly")
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launchdeck-control-api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,migrate,token}")
    commands.add_parser("serve", help="serve the API (the default)")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    token = commands.add_parser("token", help="print a new API token")
    token.add_argument(
        "--admin",
        action="store_true",
        required=True,  # the only kind for now; project tokens come with the api_tokens table
        help="an admin token (every project, every operation)",
    )
    token.add_argument(
        "--expires-in",
        type=_positive_int,
        metavar="SECONDS",
        help="expire after this many seconds (default: never)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be at least 1 second")
    return value


def print_token(expires_in_s: int | None) -> None:
    try:
        secret = env_str("LAUNCHDECK_SECRET_KEY")
    except SettingsError as exc:
        raise SystemExit(f"{SERVICE}: {exc}") from None
    token, _ = mint(secret, subject="admin", scopes=[ADMIN], expires_in_s=expires_in_s)
    print(token)  # alone on stdout, for `TOKEN=$(... token --admin)`


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "token":
        print_token(args.expires_in)
        return
    try:
        if args.command == "migrate":
            database_url = env_str("DATABASE_URL")
        else:
            settings = Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"{SERVICE}: {exc}") from None
    if args.command == "migrate":
        configure(SERVICE)
        applied = asyncio.run(migrate_database(database_url))
        log.info("migrated", applied=applied)
        return
    run_service(SERVICE, lambda stop: serve(settings, stop))
