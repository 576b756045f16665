"""`launchdeck tokens create|list|revoke` and `launchdeck audit`: API tokens (admin) and the
audit log.

`tokens create` prints the new token alone on stdout (the API shows it this once), so
`TOKEN=$(launchdeck tokens create ci --scope deploy --project blog)` works; what it is goes to
stderr. The client calls live here, over `LaunchdeckClient`'s request helpers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import quote

from launchdeck.cli.client import LaunchdeckClient
from launchdeck.cli.output import Terminal, table
from launchdeck.contracts.api import AuditEntryOut, TokenCreate, TokenCreated, TokenOut

SCOPES = ("admin", "read", "deploy", "write")


# --- client calls ------------------------------------------------------------------------------


async def create_token(client: LaunchdeckClient, body: TokenCreate) -> TokenCreated:
    return await client._call(TokenCreated, "POST", "/api/v1/tokens", body=body)


def list_tokens(client: LaunchdeckClient, page_size: int | None = None) -> AsyncIterator[TokenOut]:
    """Every token, newest first (never their values)."""
    return client._pages(TokenOut, "/api/v1/tokens", page_size)


async def revoke_token(client: LaunchdeckClient, token_id: str) -> None:
    await client._send("DELETE", f"/api/v1/tokens/{quote(token_id, safe='')}")


def audit_entries(
    client: LaunchdeckClient, *, project: str | None, page_size: int | None = None
) -> AsyncIterator[AuditEntryOut]:
    """The audit log, newest first: a project's (its writers may read it) or all (admin)."""
    if project is not None:
        path = f"/api/v1/projects/{quote(project, safe='')}/audit"
    else:
        path = "/api/v1/audit"
    return client._pages(AuditEntryOut, path, page_size)


# --- commands ----------------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


async def tokens_create(
    client: LaunchdeckClient,
    term: Terminal,
    *,
    name: str,
    scopes: list[str],
    project: str | None,
    expires_in: int | None,
) -> int:
    body = TokenCreate(
        name=name,
        scopes=scopes,  # type: ignore[arg-type]  # argparse keeps them to SCOPES
        project_id=project,
        expires_in=expires_in,
    )
    made = await create_token(client, body)
    where = f" on {project}" if project else ""
    until = f", expires {_when(made.expires_at)} UTC" if made.expires_at else ""
    about = f"token {made.name} ({', '.join(made.scopes)}{where}{until}), id {made.id}"
    # What it is on stderr; the value alone on stdout, for TOKEN=$(…). Shown this once.
    print(f"created {about}; shown this once, keep it now:", file=term.err, flush=True)
    term.raw(made.token + "\n")
    return 0


async def tokens_list(client: LaunchdeckClient, term: Terminal, *, limit: int) -> int:
    rows: list[tuple[str, ...]] = [
        ("ID", "NAME", "SCOPES", "PROJECT", "CREATED", "EXPIRES", "LAST USED", "REVOKED")
    ]
    async for t in list_tokens(client, page_size=limit):
        rows.append(
            (
                str(t.id),
                t.name,
                ",".join(t.scopes),
                str(t.project_id) if t.project_id else "-",
                _when(t.created_at),
                _when(t.expires_at),
                _when(t.last_used_at),
                _when(t.revoked_at),
            )
        )
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info("No tokens.")
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0


async def tokens_revoke(client: LaunchdeckClient, term: Terminal, *, token_id: str) -> int:
    await revoke_token(client, token_id)
    term.success(f"Revoked token {token_id} (refused everywhere within about a second)")
    return 0


async def audit(
    client: LaunchdeckClient, term: Terminal, *, project: str | None, limit: int
) -> int:
    rows: list[tuple[str, ...]] = [("WHEN", "WHO", "ACTION", "PROJECT", "TARGET")]
    async for e in audit_entries(client, project=project, page_size=limit):
        rows.append(
            (
                _when(e.at),
                e.token_name,
                e.action,
                str(e.project_id) if e.project_id else "-",
                e.target or "-",
            )
        )
        if len(rows) > limit:
            break
    if len(rows) == 1:
        term.info("Nothing recorded yet.")
        return 0
    for line in table(rows):
        term.info(line.rstrip())
    return 0
