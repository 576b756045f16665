"""structlog set-up: JSON lines for machines, the console renderer for people.

`LAUNCHDECK_LOG_FORMAT` picks the renderer: `json` (production: one object per line, ISO UTC
timestamps, tracebacks as a field), `console` (level, event and key fields aligned, time of day
only, coloured), or `auto` (console on a TTY, else JSON). Colour follows the stream unless
`NO_COLOR` or `FORCE_COLOR` says otherwise: the `launchdeck dev` supervisor pipes its children's
output to a terminal, so only the variable can tell them colour is wanted.

Ids (build_id, project_id, deployment_id) are bound with `bind_ids` through contextvars, so
every line logged while handling a job carries them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, TextIO

import structlog

from launchdeck.libs.settings import env_choice

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "console", "json"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "console", "json")


@dataclass(frozen=True)
class LogSettings:
    level: LogLevel = "info"
    format: LogFormat = "auto"

    @classmethod
    def from_env(cls) -> LogSettings:
        """`LAUNCHDECK_LOG_LEVEL` and `LAUNCHDECK_LOG_FORMAT`; a value outside the allowed ones
        raises `SettingsError` (read before anything else starts, so a typo stops the service)."""
        return cls(
            level=env_choice("LAUNCHDECK_LOG_LEVEL", LOG_LEVELS, "info"),
            format=env_choice("LAUNCHDECK_LOG_FORMAT", LOG_FORMATS, "auto"),
        )


def configure(
    service: str,
    settings: LogSettings | None = None,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send every structlog line (and the standard `logging` warnings of libraries) to `stream`
    (stderr), tagged with `service`. Without `settings` they are read from the environment."""
    settings = settings or LogSettings.from_env()
    out = stream or sys.stderr
    env = os.environ if environ is None else environ
    numeric = logging.getLevelNamesMapping()[settings.level.upper()]
    console = settings.format == "console" or (settings.format == "auto" and _isatty(out))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    processors: list[Any]
    if console:
        processors = [
            *shared,
            # The supervisor prefixes each line with the service's name already.
            _drop_service,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.processors.StackInfoRenderer(),
            # Renders exc_info itself (readably), so no format_exc_info before it.
            structlog.dev.ConsoleRenderer(colors=use_colour(out, env)),
        ]
    else:
        processors = [
            *shared,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use the standard logging module (nats, aiohttp) go to stderr at WARNING.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=out)


def use_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colour on a TTY; `NO_COLOR` (any value) turns it off, `FORCE_COLOR` (any value but `0`)
    on for a pipe that ends in a terminal. `NO_COLOR` wins: it is the reader's own refusal."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _drop_service(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.pop("service", None)
    return event_dict


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def bind_ids(**ids: str | None) -> None:
    """Bind ids to every log line of the current task (and tasks it starts)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})
