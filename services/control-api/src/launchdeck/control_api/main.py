"""control-api entry point: `launchdeck-control-api [serve|migrate|token|secrets rotate]`.

`serve` (the default) runs the common skeleton (`libs.service`: connects to NATS and provisions
JetStream, waiting for NATS while it is not up; stops on SIGTERM/SIGINT at any moment), opens
Postgres (waited for likewise; migrated first unless LAUNCHDECK_MIGRATE_ON_START is false),
then serves HTTP with the outbox relay, the events consumer, the abandoned-jobs watcher and the
log sweeper running alongside, until SIGTERM/SIGINT. `migrate` applies the migrations and exits.
`token --admin [--expires-in S] [--name N]` prints a new admin API token signed with
LAUNCHDECK_SECRET_KEY and records it in the database (DATABASE_URL), where it can be revoked.
`secrets rotate` re-encrypts every env var value and webhook secret still sealed under the
previous secret key (LAUNCHDECK_SECRET_KEY_PREVIOUS) under the current one (LAUNCHDECK_SECRET_KEY),
seals webhook secrets still in plaintext (projects created before they were sealed), and says
what is left; it exits 1 while any value is not under the current key (docs/configuration.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
from aiohttp import web

from launchdeck.contracts.subjects import SERVICE_CONTROL_API
from launchdeck.control_api.api.auth import ADMIN
from launchdeck.control_api.app import BACKGROUND, create_app
from launchdeck.control_api.domain.env_vars import rotate
from launchdeck.control_api.domain.sealing import KeyRing, Resealing
from launchdeck.control_api.domain.webhook_secrets import reseal_all
from launchdeck.control_api.migrate import MIGRATIONS_DIR, migrate_database
from launchdeck.control_api.settings import Settings
from launchdeck.libs import db
from launchdeck.libs.logging import configure, get_logger
from launchdeck.libs.service import Service, run_service, wait_until_up
from launchdeck.libs.settings import SettingsError, env_opt, env_str, public_url
from launchdeck.libs.tokens import TokenClaims, mint, register

SERVICE = "control-api"
log = get_logger(__name__)


# How connecting fails while Postgres is not up yet (refused, no socket yet, starting up).
POSTGRES_NOT_UP = (OSError, asyncpg.CannotConnectNowError)


async def serve(service: Service[Settings]) -> None:
    settings = service.settings
    pool = await wait_until_up(
        "PostgreSQL",
        lambda: db.create_pool(settings.database_url, timeouts=settings.db_timeouts),
        retry_on=POSTGRES_NOT_UP,
        url=public_url(settings.database_url),
    )
    try:
        if settings.migrate_on_start:
            async with pool.acquire() as conn:
                await db.migrate(conn, MIGRATIONS_DIR)
        app = create_app(settings, pool, service.nc, service.js)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            log.info("listening", url=f"http://{settings.host}:{settings.port}")
            # No micro endpoint: the control-api answers GET /health and /ready. The background
            # tasks are the app's: its cleanup below stops them after the in-flight requests.
            await service.run_until_stopped(*app[BACKGROUND], cancel_tasks=False)
        finally:
            # Stops accepting, lets in-flight requests finish, closes WebSockets, then
            # cancels the background tasks (the outbox keeps whatever is not yet sent).
            await runner.cleanup()
    finally:
        await pool.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launchdeck-control-api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,migrate,token,secrets}")
    commands.add_parser("serve", help="serve the API (the default)")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    token = commands.add_parser("token", help="print a new API token")
    token.add_argument(
        "--admin",
        action="store_true",
        required=True,  # the only kind offline; project tokens come from `POST /api/v1/tokens`
        help="an admin token (every project, every operation)",
    )
    token.add_argument(
        "--name", default="admin", help="the token's name in listings and the audit log"
    )
    token.add_argument(
        "--expires-in",
        type=_positive_int,
        metavar="SECONDS",
        help="expire after this many seconds (default: never)",
    )
    secrets = commands.add_parser("secrets", help="manage the encryption of env var values")
    secrets_commands = secrets.add_subparsers(dest="secrets_command", metavar="{rotate}")
    secrets_commands.required = True
    secrets_commands.add_parser(
        "rotate",
        help="re-encrypt every env var value and webhook secret under LAUNCHDECK_SECRET_KEY "
        "(reading values sealed under LAUNCHDECK_SECRET_KEY_PREVIOUS)",
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


def print_token(expires_in_s: int | None, name: str) -> None:
    """Mint an admin token and insert its `api_tokens` row (so it is revocable like any other:
    the API refuses a token without one), then print it."""
    try:
        secret = env_str("LAUNCHDECK_SECRET_KEY")
        database_url = env_str("DATABASE_URL")
    except SettingsError as exc:
        raise SystemExit(f"{SERVICE}: {exc}") from None
    token, claims = mint(secret, subject=name, scopes=[ADMIN], expires_in_s=expires_in_s)
    try:
        asyncio.run(_register_token(database_url, token, claims, name))
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"{SERVICE}: cannot record the token in the database: {exc}") from None
    print(token)  # alone on stdout, for `TOKEN=$(... token --admin)`


async def _register_token(database_url: str, token: str, claims: TokenClaims, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await register(conn, claims, name=name, created_by="control-api token", token=token)
    finally:
        await conn.close()


async def rotate_secrets(database_url: str, keyring: KeyRing) -> tuple[Resealing, Resealing]:
    pool = await db.create_pool(database_url, max_size=2)
    try:
        return await rotate(pool, keyring), await reseal_all(pool, keyring)
    finally:
        await pool.close()


def run_rotation() -> int:
    """`secrets rotate`: re-seal, then say where every value stands (stdout, for people)."""
    try:
        database_url = env_str("DATABASE_URL")
        keyring = KeyRing.from_secrets(
            env_str("LAUNCHDECK_SECRET_KEY"), env_opt("LAUNCHDECK_SECRET_KEY_PREVIOUS")
        )
        configure(SERVICE)
    except SettingsError as exc:
        raise SystemExit(f"{SERVICE}: {exc}") from None
    report, hooks = asyncio.run(rotate_secrets(database_url, keyring))
    log.info(
        "secrets_rotated",
        key_id=report.key_id,
        resealed=report.resealed,
        unreadable=len(report.unreadable),
        by_key_id=report.by_key_id,
        webhook_secrets_resealed=hooks.resealed,
        webhook_secrets_unreadable=len(hooks.unreadable),
        webhook_secrets_by_key_id=hooks.by_key_id,
    )
    print(f"re-encrypted {report.resealed} env var value(s) under key {report.key_id}")
    print(f"sealed {hooks.resealed} project webhook secret(s) under key {hooks.key_id}")
    if not keyring.previous:
        print("LAUNCHDECK_SECRET_KEY_PREVIOUS is not set (or is the current key): nothing to read")
    for name in report.unreadable:
        print(f"cannot decrypt {name}: it does not authenticate under its key")
    for project_id in hooks.unreadable:
        print(f"cannot decrypt the webhook secret of project {project_id}")
    others = {k: n for k, n in report.by_key_id.items() if k != report.key_id}
    hook_others = {k: n for k, n in hooks.by_key_id.items() if k != hooks.key_id}
    if report.complete and hooks.complete:
        print("every value is under the current key: LAUNCHDECK_SECRET_KEY_PREVIOUS may go")
        return 0
    for key_id, count in sorted(others.items()):
        print(f"{count} value(s) are still under key {key_id}", file=sys.stderr)
    for key_id, count in sorted(hook_others.items()):
        print(f"{count} webhook secret(s) are still under key {key_id}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "token":
        print_token(args.expires_in, args.name)
        return
    if args.command == "secrets":
        raise SystemExit(run_rotation())
    if args.command == "migrate":
        try:
            database_url = env_str("DATABASE_URL")
            configure(SERVICE)
        except SettingsError as exc:
            raise SystemExit(f"{SERVICE}: {exc}") from None
        applied = asyncio.run(migrate_database(database_url))
        log.info("migrated", applied=applied)
        return
    run_service(SERVICE_CONTROL_API, Settings.from_env, serve)
