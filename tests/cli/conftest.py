"""Fixtures of the CLI tests: a stand-in HTTP API in a background thread (the commands under
test call `asyncio.run` themselves), and a deadline-bounded wait helper."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from launchdeck.devservers import free_port
from tests.cli.support import ServeApp


@pytest.fixture
def serve_app() -> Iterator[ServeApp]:
    """Factory: run an aiohttp application on a free port in its own thread; returns its URL."""
    stops: list[Callable[[], None]] = []

    def serve(app: web.Application) -> str:
        port = free_port()
        loop = asyncio.new_event_loop()
        started = threading.Event()
        runner = web.AppRunner(app)

        async def start() -> None:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        if not started.wait(10):
            raise TimeoutError("stub API did not start")

        def stop() -> None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

        stops.append(stop)
        return f"http://127.0.0.1:{port}"

    yield serve
    for stop in stops:
        stop()
