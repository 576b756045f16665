"""Process releases for the tests (and benchmarks): small Node.js and Python apps, packaged as the
build-worker packages them — the app's files plus `.launchdeck/release.json` (`ReleaseManifest`).

Every app answers `GET /` with its release's `version.txt`, and:
- `/env` with its environment as JSON (what the platform gave it);
- `/crash` by exiting with code 1 (after answering);
- `/say/<word>` (Node) by printing `said <word>`;
- `/fetch` (Node) with what Node's `fetch()` of its own `/` got;
- `/slow` (Node) like `/`, 300 ms later;
- `/sandbox` (Python) with what it can see and do of the machine.
At start it prints `listening on <PORT> (<version>, token=<SECRET_TOKEN>)` — the token is
masked in the app log —, and exits with code 3 printing `boom: …` when `$HOME/crash` exists (a
test makes a process crash-loop by creating that file in the instance's HOME). SIGTERM ends it
after its in-flight requests, printing `SIGTERM: draining`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import RELEASE_MANIFEST, ReleaseManifest

from .archives import file, make_tar_gz

NODE_SERVER = r"""
const http = require("http");
const fs = require("fs");
const path = require("path");
const VERSION = fs.readFileSync(path.join(__dirname, "version.txt"), "utf8").trim();
const home = process.env.HOME || "/nonexistent";
if (fs.existsSync(path.join(home, "crash"))) {
  console.error(`boom: ${VERSION} cannot start (crash file present)`);
  process.exit(3);
}
const unhealthy = fs.existsSync(path.join(__dirname, "unhealthy.txt"));
const server = http.createServer((req, res) => {
  if (req.url === "/env") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(process.env));
  } else if (req.url === "/crash") {
    console.log("crashing on request");
    res.end("bye");
    setTimeout(() => process.exit(1), 5);
  } else if (req.url === "/slow") {
    setTimeout(() => res.end(VERSION), 300);  // a request in flight when the route moves
  } else if (req.url === "/fetch") {
    // Node's fetch() reserves ~10 GiB of address space: it must work under the default limits.
    fetch(`http://127.0.0.1:${process.env.PORT}/`).then(
      (answer) => answer.text().then((text) => res.end(`fetched ${text}`)),
      (error) => { res.statusCode = 500; res.end(String(error)); },
    );
  } else if (req.url.startsWith("/say/")) {
    console.log(`said ${req.url.slice(5)}`);
    res.end("said");
  } else if (req.url === "/health" && unhealthy) {
    console.error("health: database unreachable");
    res.statusCode = 500;
    res.end("unhealthy");
  } else {
    res.end(VERSION);
  }
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.env.PORT), "127.0.0.1", () => {
  console.log(`listening on ${process.env.PORT} (${VERSION}, token=${process.env.SECRET_TOKEN})`);
});
process.on("SIGTERM", () => {
  console.log("SIGTERM: draining");
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
"""

PYTHON_SERVER = r"""
import http.server, json, os, resource, sys, threading

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "version.txt")).read().strip()
if os.path.exists(os.path.join(os.environ.get("HOME", "/nonexistent"), "crash")):
    print(f"boom: {VERSION} cannot start (crash file present)", file=sys.stderr, flush=True)
    sys.exit(3)

import greeting  # from the release's own dependencies (PYTHONPATH, from the manifest)


def probe(path):
    try:
        with open(path) as f:
            f.read(1)
        return "readable"
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return type(exc).__name__


def can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, body, status=200, ctype="text/plain"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/env":
            self.reply(json.dumps(dict(os.environ)), ctype="application/json")
        elif self.path == "/crash":
            print("crashing on request", flush=True)
            self.reply("bye")
            threading.Timer(0.005, lambda: os._exit(1)).start()
        elif self.path.startswith("/sandbox"):
            secret = os.environ.get("PROBE_PATH", "")
            limits = {
                name: resource.getrlimit(getattr(resource, name))[0]
                for name in ("RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC")
            }
            self.reply(json.dumps({
                "probe": probe(secret) if secret else None,
                "release_writable": can_write(os.path.join(HERE, "planted.txt")),
                "home_writable": can_write(os.path.join(os.environ["HOME"], "note.txt")),
                "tmp_writable": can_write("/tmp/note.txt"),
                "limits": limits,
                "cwd": os.getcwd(),
            }), ctype="application/json")
        else:
            self.reply(f"{VERSION} {greeting.WORD}")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
TOKEN = os.environ.get("SECRET_TOKEN")
print(f"listening on {os.environ['PORT']} ({VERSION}, token={TOKEN})", flush=True)
server.serve_forever()
"""

# A WebSocket echo server on the standard library alone (the app's own framing, RFC 6455).
WEBSOCKET_SERVER = r"""
import asyncio, base64, hashlib, os, struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = open("version.txt").read().strip()


async def handle(reader, writer):
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        body = VERSION.encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        writer.write(head + body)
        await writer.drain()
        writer.close()
        return
    key = headers["sec-websocket-key"] + GUID
    accept = base64.b64encode(hashlib.sha1(key.encode()).digest()).decode()
    writer.write(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    await writer.drain()
    while True:
        first, second = await reader.readexactly(2)
        opcode, size = first & 0x0F, second & 0x7F
        if size == 126:
            size = struct.unpack(">H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(size)))
        if opcode == 8:
            writer.write(b"\x88\x00")
            await writer.drain()
            break
        if opcode == 1:
            reply = f"{VERSION} echo: {data.decode()}".encode()
            writer.write(bytes([0x81, len(reply)]) + reply)
            await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(os.environ["PORT"]))
    print(f"websocket server on {os.environ['PORT']}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""

# A worker: a heartbeat line a second, forever.
WORKER = r"""
import os, time
VERSION = open("version.txt").read().strip()
print(f"worker up ({VERSION}, queue={os.environ.get('QUEUE_URL')})", flush=True)
while True:
    time.sleep(0.2)
    print("worker heartbeat", flush=True)
"""


def manifest_file(manifest: ReleaseManifest) -> tuple[str, bytes]:
    return RELEASE_MANIFEST, encode(manifest)


def app_release(
    files: Mapping[str, str | bytes],
    processes: Mapping[str, str],
    *,
    release_command: str | None = None,
    health_path: str = "/",
    env: Mapping[str, str] | None = None,
    paths: Mapping[str, list[str]] | None = None,
) -> bytes:
    """A process release's tar.gz: `files` plus its manifest."""
    manifest = ReleaseManifest(
        kind="process",
        processes=dict(processes),
        release_command=release_command,
        health_path=health_path,
        runtime={"node": "20", "python": "3"},
        env=dict(env or {}),
        paths={k: list(v) for k, v in (paths or {}).items()},
    )
    name, data = manifest_file(manifest)
    return make_tar_gz([*(file(n, d) for n, d in files.items()), file(name, data)])


def node_app(version: str, **extra: str) -> bytes:
    """`node server.js`, answering `version`."""
    files = {"server.js": NODE_SERVER, "version.txt": version, **extra}
    return app_release(files, {"web": "node server.js"}, env={"NODE_ENV": "production"})


def python_app(version: str, **extra: str) -> bytes:
    """A Python HTTP server using a dependency shipped in the release (as the build-worker
    installs them: a directory put on PYTHONPATH by the manifest)."""
    files = {
        "app.py": PYTHON_SERVER,
        "version.txt": version,
        ".launchdeck/site-packages/greeting.py": 'WORD = "hello from a dependency"\n',
        **extra,
    }
    return app_release(
        files,
        {"web": "python3 app.py"},
        env={"PYTHONUNBUFFERED": "1"},
        paths={"PYTHONPATH": [".launchdeck/site-packages"]},
    )


def env_json(text: str) -> dict[str, str]:
    return dict(json.loads(text))
