"""A steady load: `rate` requests per second to `url` (with Host `host`), open loop, until stdin
closes; one JSON line per request in `out` (`ok`, `ms` from its scheduled start, or `error`),
after a first line with how long it sent requests (`elapsed_s`).

    python -m bench._load URL HOST RATE OUT

Open loop: each request starts at its scheduled time whatever the previous ones do, and its
latency counts from that time, so a stall shows as latency (and as requests in flight), not as
fewer requests (no coordinated omission). Requests share a keep-alive pool, as a browser's or a
load balancer's would.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp


async def run(url: str, host: str, rate: float, out: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stdin() -> None:
        if sys.stdin.read() == "":  # closed: the parent is done
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    results: list[str] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=64)
    ) as session:

        async def one(scheduled: float) -> None:
            try:
                async with session.get(url, headers={"Host": host}) as resp:
                    body = await resp.text()
                    ok = resp.status == 200 and body.startswith("ok ")
                    error = None if ok else f"{resp.status} {body[:80]!r}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                ok, error = False, repr(exc)
            ms = (time.monotonic() - scheduled) * 1000
            results.append(json.dumps({"ok": ok, "ms": round(ms, 3), "error": error}))

        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        sent = 0
        while not stop.is_set():
            scheduled = start + sent / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        elapsed_s = time.monotonic() - start
        await asyncio.gather(*tasks)
    with open(out, "w") as handle:  # noqa: ASYNC230 (once, at the end)
        handle.write("\n".join([json.dumps({"elapsed_s": elapsed_s}), *results]) + "\n")


def main() -> None:
    url, host, rate, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
    asyncio.run(run(url, host, rate, out))


if __name__ == "__main__":
    main()
