"""An open-loop HTTP load for the API benchmarks, run in its own process so the load's CPU is not
the measuring process's: `rate` requests per second for `seconds`, each started at its scheduled
time whatever the previous ones do, its latency counted from that time (a stall shows as latency,
not as fewer requests: no coordinated omission). Keep-alive connections, at most `connections`.

    python -m bench._http_load SPEC_JSON OUT_JSON

SPEC_JSON: {"url", "method", "headers", "body" (a JSON value or null), "rate", "seconds",
"connections", "expect" (the status that counts as success)}. OUT_JSON gets {"elapsed_s",
"sent", "late_ms" (how far behind schedule the last request started: the load process itself
could not keep up when large), "results": [[start offset s, latency ms, status or 0, response
body when `keep_bodies` (or an error), wall-clock time.time() of the answer], ...]}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    rate, seconds = float(spec["rate"]), float(spec["seconds"])
    method, url = spec.get("method", "GET"), spec["url"]
    headers = spec.get("headers", {})
    body = None if spec.get("body") is None else json.dumps(spec["body"]).encode()
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    keep_bodies = bool(spec.get("keep_bodies"))
    expect = int(spec.get("expect", 200))
    results: list[list[Any]] = []
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=int(spec.get("connections", 64)))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.monotonic()

        async def one(scheduled: float) -> None:
            status, text = 0, None
            try:
                async with session.request(method, url, headers=headers, data=body) as resp:
                    raw = await resp.read()
                    status = resp.status
                    if keep_bodies or status != expect:
                        text = raw.decode(errors="replace")[:2000]
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                text = repr(exc)
            done, wall = time.monotonic(), time.time()
            results.append([scheduled - start, (done - scheduled) * 1000, status, text, wall])

        tasks: set[asyncio.Task[None]] = set()
        total = int(rate * seconds)
        late = 0.0
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            task = asyncio.create_task(one(scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elapsed = time.monotonic() - start
        await asyncio.gather(*tasks)
    return {"elapsed_s": elapsed, "sent": total, "late_ms": late * 1000, "results": results}


async def load(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the load in a child process and return what it wrote."""
    spec_path = out.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._http_load", str(spec_path), str(out), cwd=ROOT
    )
    if await proc.wait() != 0:
        raise RuntimeError(f"the load process failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())  # noqa: ASYNC240 (once, at the end)
    return result


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(spec))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
