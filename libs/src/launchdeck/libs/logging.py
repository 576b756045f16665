"""structlog set-up: JSON lines in production, the console renderer on a TTY.

Ids (build_id, project_id, deployment_id) are bound with `bind_ids` through contextvars, so
every line logged while handling a job carries them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def configure(service: str, level: str | None = None) -> None:
    level_name = (level or os.environ.get("LAUNCHDECK_LOG_LEVEL", "info")).upper()
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    as_json = os.environ.get("LAUNCHDECK_LOG_FORMAT", "auto")
    use_console = as_json == "console" or (as_json == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use the standard logging module (nats, aiohttp) go to stderr at WARNING.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def bind_ids(**ids: str | None) -> None:
    """Bind ids to every log line of the current task (and tasks it starts)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})
