"""The baseline of the API read benchmark: a bare aiohttp server answering every GET with the
same JSON bytes from memory (no auth, no database), on its own process and port.

    python -m bench._bare_http BODY_FILE   (prints the port on stdout once it listens)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web


async def serve(body: bytes) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()  # until killed


def main() -> None:
    asyncio.run(serve(Path(sys.argv[1]).read_bytes()))


if __name__ == "__main__":
    main()
