"""Is a new web process ready for traffic? Asked of the process directly, before any is routed.

Two phases, both cut short the moment the process exits:

1. starting: the port is tried every 50 ms until the app listens on it (a connection is
   accepted), for at most `start_timeout_s`. A refused connection is not a failed try: the app
   is still loading.
2. checking: up to `tries` requests of `GET <health_path>` (`interval_s` apart, each allowed
   `timeout_s`), sent with the site's own Host header (frameworks that check it — Django's
   ALLOWED_HOSTS — see the name they are served under); the first 2xx or 3xx passes.

With the defaults (3 tries 5 s apart, 5 s each) an app answering at once is ready in the
milliseconds it takes to start, and one that never answers is given up after ~15 s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from launchdeck.deploy_engine.apps.process import AppProcess

CONNECT_POLL_S = 0.05


@dataclass(frozen=True)
class HealthPolicy:
    start_timeout_s: float = 60.0
    tries: int = 3
    interval_s: float = 5.0
    timeout_s: float = 5.0


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    reason: str = ""
    status: int | None = None


class _Exited(Exception):
    pass


async def _or_exit(process: AppProcess, awaitable_s: float) -> None:
    """Sleep `awaitable_s`, or raise _Exited as soon as the process exits."""
    try:
        await asyncio.wait_for(process.exited.wait(), awaitable_s)
    except TimeoutError:
        return
    raise _Exited


async def _listening(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def _get(
    session: aiohttp.ClientSession, port: int, path: str, host: str, timeout_s: float
) -> HealthResult:
    try:
        async with session.get(
            f"http://127.0.0.1:{port}{path}",
            headers={"Host": host},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            await resp.read()
            if 200 <= resp.status < 400:
                return HealthResult(True, status=resp.status)
            return HealthResult(False, f"GET {path} answered {resp.status}", resp.status)
    except TimeoutError:
        return HealthResult(False, f"GET {path} did not answer within {timeout_s:g}s")
    except (aiohttp.ClientError, OSError) as exc:
        return HealthResult(False, f"GET {path} failed: {exc or type(exc).__name__}")


async def check_health(
    session: aiohttp.ClientSession,
    process: AppProcess,
    *,
    port: int,
    path: str,
    host: str,
    policy: HealthPolicy,
) -> HealthResult:
    """Whether the web process `process`, listening on `port`, is ready (module docstring)."""
    try:
        deadline = time.monotonic() + policy.start_timeout_s
        while not await _listening(port):
            if time.monotonic() > deadline:
                return HealthResult(
                    False,
                    f"the app did not listen on its port ({port}, given as PORT) within "
                    f"{policy.start_timeout_s:g}s",
                )
            await _or_exit(process, CONNECT_POLL_S)
        result = HealthResult(False, "no health check was made")
        for attempt in range(policy.tries):
            if attempt:
                await _or_exit(process, policy.interval_s)
            check = asyncio.ensure_future(_get(session, port, path, host, policy.timeout_s))
            exited = asyncio.ensure_future(process.exited.wait())
            done, _ = await asyncio.wait({check, exited}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if check not in done:
                check.cancel()
                raise _Exited
            result = check.result()
            if result.ok:
                return result
        tries = "1 try" if policy.tries == 1 else f"{policy.tries} tries"
        return HealthResult(False, f"health check failed after {tries}: {result.reason}")
    except _Exited:
        how = await process.exit_description()
        return HealthResult(False, f"the app {how} before it passed its health check")
