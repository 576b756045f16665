"""The control-api's SQL migrations (`migrations/NNNN_*.sql`), applied by `libs.db.migrate`.

Used at start-up (`LAUNCHDECK_MIGRATE_ON_START`), by `python -m launchdeck.control_api migrate`,
and by the CLI and test fixtures.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from launchdeck.libs import db

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def migrate_database(dsn: str) -> list[str]:
    """Apply pending migrations to the database at `dsn`; return the names applied now."""
    conn = await asyncpg.connect(dsn)
    try:
        return await db.migrate(conn, MIGRATIONS_DIR)
    finally:
        await conn.close()
