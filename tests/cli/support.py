"""CLI test helpers: the type of the `serve_app` fixture (a stand-in API served in a thread)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

ServeApp = Callable[[web.Application], str]
