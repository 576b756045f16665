"""Reading typed settings from environment variables.

Each service defines one frozen dataclass of its settings (documented in docs/configuration.md)
and builds it with these helpers, so a missing or malformed variable fails at start-up with the
variable's name in the message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def env_secret(name: str) -> str | None:
    """A secret from `name`, or from the file `<name>_FILE` names (its content, without the
    trailing newline); None when neither is set. A file keeps the secret out of the process's
    environment, which its children inherit unless told otherwise and `/proc/<pid>/environ`
    shows; the message of an unreadable or empty file names the variable and the path, never
    the content. Both set: a `SettingsError` (which one would win is not obvious)."""
    value = env_opt(name)
    path = env_opt(f"{name}_FILE")
    if path is None:
        return value
    if value is not None:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SettingsError(f"{name}_FILE={path} cannot be read: {reason}") from None
    if not secret:
        raise SettingsError(f"{name}_FILE={path} is empty")
    return secret


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
    """`NATS_URL`, shared by every service: one server, or several comma-separated (a cluster),
    each of which may carry credentials (`nats://user:password@host:4222`, `nats://token@host`)."""
    return env_str("NATS_URL", "nats://127.0.0.1:4222")


REPLICAS_VARIABLE = "LAUNCHDECK_NATS_REPLICAS"
MAX_NATS_REPLICAS = 5  # JetStream's own limit


def nats_replicas() -> int | None:
    """`LAUNCHDECK_NATS_REPLICAS`: how many copies JetStream keeps of every stream, object store
    and KV bucket, 1 to 5; None when unset, for provisioning to choose from what the server
    reports (`libs.provisioning.choose_replicas`). A 0 would create nothing and 6 is refused by
    JetStream, so both stop the service at start rather than at its first stream."""
    raw = os.environ.get(REPLICAS_VARIABLE, "").strip()
    if not raw:
        return None
    try:
        replicas = int(raw)
    except ValueError:
        replicas = 0
    if not 1 <= replicas <= MAX_NATS_REPLICAS:
        raise SettingsError(
            f"environment variable {REPLICAS_VARIABLE} must be an integer from 1 to "
            f"{MAX_NATS_REPLICAS}, got {raw!r}"
        )
    return replicas


# Every variable `NatsOptions` reads credentials from: what a launcher strips from the
# environment it passes on, when it gives each service a login of its own.
NATS_CREDENTIAL_VARIABLES = (
    "NATS_USER",
    "NATS_PASSWORD",
    "NATS_PASSWORD_FILE",
    "NATS_TOKEN",
    "NATS_TOKEN_FILE",
)


@dataclass(frozen=True)
class NatsOptions:
    """What every service reads about NATS besides `NATS_URL` (`libs.service.run_service` reads
    it with the log settings, so a bad value stops any service the same way).

    Credentials may also come apart from the URL, so they need not sit in a URL that ends up in
    process listings and config dumps: `NATS_USER` with `NATS_PASSWORD`, or `NATS_TOKEN`; the
    password and the token may be read from a file instead (`NATS_PASSWORD_FILE`,
    `NATS_TOKEN_FILE`: `env_secret`), so they need not sit in the environment either. They are
    used for every server, including the nodes learnt from the cluster. The secrets are left out
    of `repr`.
    """

    replicas: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> NatsOptions:
        user, password = env_opt("NATS_USER"), env_secret("NATS_PASSWORD")
        token = env_secret("NATS_TOKEN")
        if (user is None) != (password is None):
            raise SettingsError(
                "environment variables NATS_USER and NATS_PASSWORD go together (the password "
                "may come from the file NATS_PASSWORD_FILE names)"
            )
        if token is not None and user is not None:
            raise SettingsError("set NATS_TOKEN or NATS_USER and NATS_PASSWORD, not both")
        return cls(replicas=nats_replicas(), user=user, password=password, token=token)

    def credentials(self) -> dict[str, str]:
        """nats-py's connect options for the credentials given here (none: the URL's own)."""
        if self.user is not None and self.password is not None:
            return {"user": self.user, "password": self.password}
        if self.token is not None:
            return {"token": self.token}
        return {}
