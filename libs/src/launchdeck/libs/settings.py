"""Reading typed settings from environment variables.

Each service defines one frozen dataclass of its settings (documented in docs/configuration.md)
and builds it with these helpers, so a missing or malformed variable fails at start-up with the
variable's name in the message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Choice = TypeVar("Choice", bound=str)


class SettingsError(ValueError):
    """A required variable is missing or a value does not parse."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise SettingsError(f"environment variable {name} is required")
        return default
    return value


def env_opt(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: Sequence[str]) -> tuple[str, ...]:
    """A comma-separated list; blank items are dropped."""
    raw = env_str(name, ",".join(default))
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"environment variable {name} must be a boolean, got {raw!r}")


def env_choice(name: str, choices: Sequence[Choice], default: Choice) -> Choice:
    """One of a fixed set of words (case-insensitive; `choices` are lower case), so a typo such
    as `verbose` for a log level stops the service instead of silently meaning the default."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    wanted = raw.strip().lower()
    for choice in choices:
        if choice == wanted:
            return choice
    raise SettingsError(
        f"environment variable {name} must be one of {', '.join(choices)}, got {raw!r}"
    )


# Query parameters of a URL that are safe to show (a DSN may carry `?password=`).
_PUBLIC_QUERY_KEYS = frozenset({"host", "port"})


def public_url(url: str) -> str:
    """`url` without user, password or token, fit for a log line or an error message.

    Everything before the last `@` goes (a password holding `/`, `?` or `#` goes whole); of
    the query only `host` and `port` stay.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest = rest.rpartition("@")[2]
    parts = urlsplit(f"//{rest}")
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k in _PUBLIC_QUERY_KEYS]
    query = urlencode(kept, safe="/")
    shown = urlunsplit(("", parts.netloc, parts.path, query, "")).removeprefix("//")
    return f"{scheme}://{shown}" if sep else shown


def nats_url() -> str:
    """`NATS_URL`, shared by every service."""
    return env_str("NATS_URL", "nats://127.0.0.1:4222")
