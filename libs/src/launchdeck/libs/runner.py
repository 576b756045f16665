"""Process plumbing under every service: signals, start-up versus running, exit codes.

`run_process(main)` runs `main(lifecycle)` on a fresh event loop. SIGTERM and SIGINT
(Ctrl-C) set `lifecycle.stop`. What that means depends on where `main` is:

- still starting (connecting, waiting for a dependency, provisioning): there is nothing in flight
  to finish or hand back, so `main` is cancelled at once — a service waiting for a NATS that
  never comes stops promptly instead of ignoring the signal;
- running (after `lifecycle.running()`): `main` sees `stop` and finishes or hands back its
  work itself; a second signal cancels it, for whoever cannot wait.

Either way the process exits 0. An exception out of `main` is logged (`service_failed`, with the
traceback) and exits 1, so a supervisor restarts the service. Most services use this through
`libs.service.run_service`, which adds settings, NATS and JetStream.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from launchdeck.libs.logging import get_logger

log = get_logger(__name__)


class Lifecycle:
    """The stop event of one process, and whether its main coroutine is past start-up."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self._running = False
        self._main: asyncio.Task[None] | None = None

    def attach(self, main: asyncio.Task[None]) -> None:
        """The task a stop during start-up (or a second stop) cancels."""
        self._main = main

    def running(self) -> None:
        """Start-up is over: from now on a stop signal asks for a graceful stop."""
        self._running = True

    def request_stop(self, reason: str) -> None:
        """Set `stop`; cancel the main task if it is still starting or was asked already."""
        if not self.stop.is_set():
            log.info("service_stopping", reason=reason)
        if (not self._running or self.stop.is_set()) and self._main is not None:
            self._main.cancel()
        self.stop.set()


def run_process(main: Callable[[Lifecycle], Awaitable[None]]) -> None:
    """Run `main` until it returns or a signal stops it (logging is configured by the caller).
    Exits with code 1 when `main` fails."""
    if not asyncio.run(_run(main)):
        raise SystemExit(1)


async def _run(main: Callable[[Lifecycle], Awaitable[None]]) -> bool:
    lifecycle = Lifecycle()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.request_stop, sig.name)

    async def wrapped() -> None:
        await main(lifecycle)

    task = asyncio.create_task(wrapped(), name="main")
    lifecycle.attach(task)
    log.info("service_starting")
    try:
        await task
    except asyncio.CancelledError:
        if not (task.cancelled() and lifecycle.stop.is_set()):
            raise
    except Exception:
        log.exception("service_failed")
        return False
    log.info("service_stopped")
    return True


async def run_until_stopped(
    stop: asyncio.Event, *tasks: asyncio.Task[None], cancel_tasks: bool = True
) -> None:
    """Wait for `stop` (or for one task to end), then cancel all tasks and wait for them —
    unless `cancel_tasks` is False: the tasks belong to someone who stops them in their own
    order (the control-api's aiohttp app cancels its background tasks after in-flight requests
    have finished).

    A task that ends on its own is a bug or a lost dependency: it is logged
    (`background_task_ended`, with its name) and its error re-raised, so the process exits
    non-zero and its supervisor restarts it.
    """
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if cancel_tasks:
            # Also when cancelled itself (a second signal): the tasks get to hand work back.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done:
            error = None if task.cancelled() else task.exception()
            log.error("background_task_ended", task=task.get_name(), error=repr(error))
            if error is not None:
                raise error
            raise RuntimeError(f"{task.get_name()} ended unexpectedly")
