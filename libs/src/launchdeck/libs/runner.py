"""Process entry-point plumbing: logging, signals, graceful shutdown.

`run_service(name, main)` runs `main(stop)` where `stop` is an Event set on SIGTERM/SIGINT;
`main` should then finish or hand back in-flight work and return.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from launchdeck.libs.logging import configure, get_logger


def run_service(name: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    configure(name)
    log = get_logger(name)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("service_starting")
        await main(stop)
        log.info("service_stopped")

    asyncio.run(_run())


async def run_until_stopped(stop: asyncio.Event, *tasks: asyncio.Task[None]) -> None:
    """Wait for `stop` (or for one task to die), then cancel all tasks and wait for them.

    A task that dies on its own is a bug or a lost dependency: re-raise so the process exits
    non-zero and its supervisor restarts it.
    """
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopper, *tasks):
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task is not stopper:
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    raise result
            raise RuntimeError("a service task ended unexpectedly")
