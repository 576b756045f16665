"""`launchdeck dev`: the whole platform on one machine, what `make dev` runs.

Ctrl-C (or SIGTERM) stops the services, the deploy-engine's Caddy, NATS and Postgres, in that
order. The parts, each small enough to read on its own:

- `services`: each service's command line and environment (the supervisor wiring);
- `environment`: one run — servers, ports, migrations, dev.json, the supervised services;
- `nats`: the embedded NATS, one server or a cluster (`LAUNCHDECK_DEV_NATS_NODES`);
- `readiness`: when dev.json may say `"ready": true`;
- `banner`: what is printed once everything is up;
- `launchdeck.cli.example`: the bundled example site and its deploy.

This module holds the run's frame: the state-directory lock and the signals.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from contextlib import AsyncExitStack

import asyncpg

from launchdeck.cli.dev.environment import DevEnvironment, DevOptions
from launchdeck.cli.devstate import StateDirBusy, dev_lock
from launchdeck.cli.output import PrefixedTerminal

__all__ = ["DevOptions", "run_dev"]


async def run_dev(options: DevOptions, term: PrefixedTerminal | None = None) -> int:
    term = term or PrefixedTerminal()
    stop = asyncio.Event()
    env = DevEnvironment(options, term, dict(os.environ), stop)
    loop = asyncio.get_running_loop()

    first_signal_at: float | None = None

    def on_signal() -> None:
        nonlocal first_signal_at
        now = time.monotonic()
        if first_signal_at is None:
            first_signal_at = now
            stop.set()
        # One Ctrl-C under `uv run` arrives twice (from the terminal and forwarded by uv):
        # only a later, deliberate second interrupt skips the grace period.
        elif now - first_signal_at > 1.0:
            term.info("second interrupt: killing the services now")
            env.kill_now()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with dev_lock(env.state):
            async with AsyncExitStack() as stack:
                code = await env.run(stack)
            if code == 0:
                term.info("stopped")
            return code
    except StateDirBusy as exc:
        term.error(str(exc))
        return 1
    except (OSError, RuntimeError, subprocess.SubprocessError, asyncpg.PostgresError) as exc:
        # Start-up failed (a server did not start, a port was taken...); what had started
        # was stopped by the exit stack above.
        term.error(f"launchdeck dev could not start: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
