"""The test session's NATS users: the platform's (`libs.nats_access`), with passwords made once
per session. Every NATS server the fixtures start — the session's, the clusters, a
`RestartableNats` — lets in only these, as `launchdeck dev`'s does; a test's own client logs in as
the operator (`operator_url`: what the `nats_url` fixture yields), and the services of an e2e
platform each as their own user (`service_logins`), so the e2e suite proves the permission table
sufficient. `permission_violations` reads what the server refused to whom from its log.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote

from launchdeck.libs.jetstream import public_nats_url, servers
from launchdeck.libs.nats_access import (
    OPERATOR_USER,
    SERVICES,
    USERS,
    authorization_config,
    literal_password,
    new_password,
)

PASSWORDS: Mapping[str, str] = {user: new_password() for user in USERS}
# The `authorization` block of every server the fixtures start.
AUTH_CONFIG = authorization_config(literal_password(PASSWORDS))


def login_url(url: str, user: str) -> str:
    """`url` (every server of it) logging in as `user` of this session."""
    userinfo = f"{quote(user, safe='')}:{quote(PASSWORDS[user], safe='')}@"
    return ",".join(
        server.replace("nats://", "nats://" + userinfo, 1)
        for server in servers(public_nats_url(url))
    )


def operator_url(url: str) -> str:
    """`url` logging in as the operator, allowed everything: a test's own client."""
    return login_url(url, OPERATOR_USER)


def service_logins() -> dict[str, tuple[str, str]]:
    """Each service's (`control-api`…) NATS user and password."""
    return {access.user: (access.user, PASSWORDS[access.user]) for access in SERVICES}


# nats-server's log line of a refusal: `… - "$G/user:build-worker" - Publish Violation - Subject
# "ld.jobs.deploy"` (also `Subscription Violation`).
_VIOLATION = re.compile(
    r'"\$G/user:(?P<user>[^"]+)" - (?P<what>\w+) Violation - Subject "(?P<subject>[^"]*)"'
)


def permission_violations(
    log_files: Iterable[Path], since: Mapping[Path, int] | None = None
) -> list[str]:
    """What nats-server refused to the platform's service users, as `user: what subject` — from
    each log file's byte `since[file]` on (a run's own part of a shared server's log)."""
    services = {access.user for access in SERVICES}
    found = []
    for path in log_files:
        try:
            with path.open("rb") as handle:
                handle.seek((since or {}).get(path, 0))
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            continue
        for match in _VIOLATION.finditer(text):
            if match["user"] in services:
                found.append(f"{match['user']}: {match['what']} {match['subject']}")
    return found


def log_sizes(log_files: Iterable[Path]) -> dict[Path, int]:
    """Where each log file ends now (for `permission_violations(…, since=…)`)."""
    return {path: path.stat().st_size if path.exists() else 0 for path in log_files}
