"""Running a process release the way the deploy-engine does: extracted somewhere else than it
was built, its manifest read, a process started with `sh -c` and `PORT`, and asked over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import tarfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from launchdeck.contracts.messages import ReleaseManifest
from launchdeck.devservers import free_port
from launchdeck.libs.launcher.release import process_env, read_manifest
from tests.polling import eventually


def extract(data: bytes, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def manifest_of(release: Path) -> ReleaseManifest:
    manifest = read_manifest(release)
    assert manifest is not None, "the release has no manifest"
    return manifest


def log_file(home: Path, process: str) -> Path:
    home.mkdir(exist_ok=True)
    return home / f"{process}.log"


@dataclass(frozen=True)
class App:
    url: str
    output: Path  # what the process printed


@contextlib.asynccontextmanager
async def running(
    release: Path, process: str, home: Path, base_env: Mapping[str, str] | None = None
) -> AsyncIterator[App]:
    """Run `process` of the release extracted at `release` on a free port, with the caller's
    PATH (or `base_env`'s); its process group is killed afterwards."""
    manifest = manifest_of(release)
    port = free_port()
    env = process_env(
        manifest,
        release,
        {"PATH": os.environ["PATH"], **(base_env or {}), "HOME": str(home), "PORT": str(port)},
    )
    output = log_file(home, process)
    with output.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            manifest.processes[process],
            cwd=release,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield App(f"http://127.0.0.1:{port}/", output)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def answer(app: App) -> str:
    """The body of the first 200 answer of `app`, asked until it listens."""

    async def get() -> str | None:
        try:
            async with aiohttp.ClientSession() as session, session.get(app.url) as resp:
                return await resp.text() if resp.status == 200 else None
        except aiohttp.ClientConnectionError:
            return None

    try:
        return await eventually(f"the app to answer at {app.url}", get, timeout_s=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it printed:\n{app.output.read_text()}") from None
