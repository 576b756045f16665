"""Container releases for tests, made with the container engine directly (no build-worker): a
Dockerfile built into an image, saved as an OCI archive, packed with its manifest into the
release tarball a build would store (`.launchdeck/release.json` + `.launchdeck/image.tar`)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import RELEASE_MANIFEST, ContainerImage, ReleaseManifest

IMAGE_ARCHIVE = ".launchdeck/image.tar"

# A small aiohttp server: `/` answers its build marker, `/env/<NAME>` a variable, `/health`
# ok, `/alloc/<MiB>` allocates that much (past a memory limit: the OOM killer), `/slow` 300 ms.
AIOHTTP_SERVER = """\
import asyncio, os, signal
from aiohttp import web

MARKER = open("/app/marker.txt").read().strip()
held = []

async def index(_r): return web.Response(text=MARKER)
async def health(_r): return web.Response(text="ok")
async def env(r): return web.Response(text=os.environ.get(r.match_info["name"], "<unset>"))
async def slow(_r):
    await asyncio.sleep(0.3)
    return web.Response(text=MARKER)
async def alloc(r):
    held.append(bytearray(int(r.match_info["mib"]) * 1024 * 1024))
    for chunk in held:
        for i in range(0, len(chunk), 4096): chunk[i] = 1
    return web.Response(text="allocated")

app = web.Application()
app.add_routes([web.get("/", index), web.get("/health", health), web.get("/slow", slow),
                web.get("/env/{name}", env), web.get("/alloc/{mib}", alloc)])
print(f"listening on {os.environ['PORT']} ({MARKER})", flush=True)
web.run_app(app, host="0.0.0.0", port=int(os.environ["PORT"]), print=None,
            shutdown_timeout=5, handle_signals=True)
"""


def aiohttp_dockerfile(base_image: str) -> str:
    """The server's image: the dependencies in a layer of their own (cached between markers)."""
    return (
        f"FROM {base_image}\n"
        "RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir -q aiohttp\n"
        "COPY server.py /app/server.py\n"
        "ARG MARKER=v1\n"
        'RUN echo "$MARKER" > /app/marker.txt\n'
        "EXPOSE 8080\n"
        'CMD ["/venv/bin/python", "-u", "/app/server.py"]\n'
    )


def build_image(
    engine: str, context: Path, files: Mapping[str, str], build_args: Mapping[str, str]
) -> str:
    """Build `files` (a Dockerfile and what it copies) in `context`; the image id (sha256:…)."""
    context.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (context / name).write_text(text)
    args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
    iidfile = context / "iid"
    result = subprocess.run(
        [engine, "build", "-q", *args, "--iidfile", str(iidfile), str(context)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    image_id = iidfile.read_text().strip()
    return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"


def image_command(engine: str, image_id: str) -> list[str]:
    out = subprocess.run(
        [engine, "image", "inspect", "--format", "{{json .Config}}", image_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = json.loads(out)
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def container_release(
    engine: str, image_id: str, workdir: Path, *, health_path: str = "/health"
) -> bytes:
    """The release tarball of the image `image_id` (as a build of it would store it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / f"{image_id.removeprefix('sha256:')[:16]}.tar"
    archive.unlink(missing_ok=True)
    subprocess.run(
        [engine, "save", "--format", "oci-archive", "-o", str(archive), image_id],
        capture_output=True,
        check=True,
        timeout=600,
    )
    command = image_command(engine, image_id)
    manifest = ReleaseManifest(
        kind="container",
        processes={"web": " ".join(command)},
        health_path=health_path,
        image=ContainerImage(archive=IMAGE_ARCHIVE, id=image_id, ports=[8080], command=command),
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        data = encode(manifest)
        info = tarfile.TarInfo(RELEASE_MANIFEST)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(archive, arcname=IMAGE_ARCHIVE)
    archive.unlink()
    return buf.getvalue()
