"""A Dockerfile app's build: the image built by the container engine, saved as an OCI archive
into a release directory with its manifest (`.launchdeck/release.json`, kind "container").

The engine runs outside the build's bubblewrap sandbox: it isolates the build itself (every
`RUN` step is a container), and `podman build` needs the privileges (mounts, namespaces,
its storage) the sandbox would take away. It runs through the same command runner as every
build command (`run.run_command`): its output streamed line by line into the log with the
project's values masked, under the build's time limit, killed with its process group on
cancellation.

The project's `build` variables reach the image two ways, never by the command line:
- every one as a build secret, a file (0600, in a private directory removed after the build)
  that `RUN --mount=type=secret,id=NAME` reads; it is never stored in a layer;
- the names listed in `build_args` also as build arguments (`ARG NAME`), their values read by
  the engine from its environment. Build arguments are visible in the image's history: for
  values that are not secret.

After the build the image is inspected (id, EXPOSEd ports, ENTRYPOINT + CMD), saved, and its
build tag removed. The project's `cache` tag moves to the new image, so its layers (the next
build's cache) stay; the image it replaces is removed when nothing else uses it. A `RUN` step
left running by a cancelled or timed-out build is killed (`container_leftovers.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from launchdeck.build_worker.container_engine import (
    Engine,
    ImageFacts,
    build_argv,
    build_tag,
    cache_tag,
    inspect_argv,
    parse_inspect,
    rmi_argv,
    save_argv,
    tag_argv,
)
from launchdeck.build_worker.container_leftovers import end_cgroup, new_cgroup_parent
from launchdeck.build_worker.detect import BuildPlan
from launchdeck.build_worker.errors import BuildFailed
from launchdeck.build_worker.run import OutputSink, run_command
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import (
    RELEASE_MANIFEST,
    ContainerImage,
    LogStream,
    ReleaseManifest,
)

IMAGE_ARCHIVE = ".launchdeck/image.tar"
# Removing tags is housekeeping: it gets this long, whatever is left of the build's time.
HOUSEKEEPING_TIMEOUT_S = 60.0
ENGINE_NOTE = (
    "▶ The image is built by {engine} outside the build sandbox: the engine isolates the build "
    "(each RUN step is a container)"
)
# What podman says when an image or layer it had listed vanished meanwhile (`storage_race`).
STORAGE_RACE_SIGNS = ("layer not known", "image not known")
STORAGE_RACE_ATTEMPTS = 2
STORAGE_RACE_NOTE = (
    "⚠ The engine's image storage changed under the build (an image was removed meanwhile): "
    "building again"
)


@dataclass(frozen=True)
class ContainerJob:
    """One image build: what to build and how commands run for this attempt."""

    engine: Engine
    plan: BuildPlan
    project: str
    build_id: str
    project_vars: Mapping[str, str]  # the project's `build` variables
    env: Mapping[str, str]  # the engine's environment (`container_engine.engine_env`)
    workdir: Path  # the attempt's; holds the secrets directory and the release
    sink: OutputSink  # the build log (masked)
    say: Callable[[str], None]  # a system line in the build log
    time_left: Callable[[], float]  # the build's time limit, as seconds left (or BuildTimedOut)


@dataclass(frozen=True)
class BuiltImage:
    release: Path  # the directory to package: .launchdeck/{release.json,image.tar}
    manifest: ReleaseManifest
    facts: ImageFacts
    archive_size: int


class _LastLines:
    """A sink that also remembers the command's last non-empty lines (for the build's error)."""

    def __init__(self, sink: OutputSink, keep: int = 5) -> None:
        self._sink = sink
        self._keep = keep
        self.lines: list[str] = []

    def __call__(self, stream: LogStream, lines: list[str]) -> Awaitable[None] | None:
        kept = [line.strip() for line in lines if line.strip()]
        if kept:
            self.lines = (self.lines + kept)[-self._keep :]
        return self._sink(stream, lines)


def _collect(into: list[str], stderr: OutputSink) -> OutputSink:
    """stdout kept in `into` (a command whose output the worker reads), stderr to the log."""

    def sink(stream: LogStream, lines: list[str]) -> Awaitable[None] | None:
        if stream == "stdout":
            into.extend(lines)
            return None
        return stderr(stream, lines)

    return sink


async def _run(
    job: ContainerJob, argv: Sequence[str], sink: OutputSink, timeout_s: float | None = None
) -> float:
    return await run_command(
        argv,
        cwd=job.plan.root,
        env=job.env,
        sink=sink,
        timeout_s=timeout_s if timeout_s is not None else job.time_left(),
        marker=str(job.workdir),  # how leftovers are found (`workspace.py`)
    )


async def _quietly(job: ContainerJob, argv: Sequence[str]) -> list[str] | None:
    """A housekeeping command's stdout, or None when it failed (nothing logged)."""
    out: list[str] = []
    try:
        await _run(job, argv, _collect(out, lambda _s, _l: None), HOUSEKEEPING_TIMEOUT_S)
    except BuildFailed:
        return None
    return out


def _write_secrets(directory: Path, values: Mapping[str, str]) -> dict[str, Path]:
    """One file per variable (0600) in `directory` (0700), outside the build context."""
    directory.chmod(0o700)
    files: dict[str, Path] = {}
    for name, value in sorted(values.items()):
        path = directory / name
        path.touch(mode=0o600)
        path.write_text(value, encoding="utf-8")
        files[name] = path
    return files


def storage_race(lines: Sequence[str]) -> bool:
    """The engine lost a layer or image it had just listed: another process (the deploy-engine
    pruning an image, another build) removed it meanwhile. podman 4.3 fails the build then
    (`checking if cached image exists from a previous build: … layer not known`); the same
    build run again finds a consistent storage."""
    return any(sign in line for line in lines for sign in STORAGE_RACE_SIGNS)


async def _engine_build(job: ContainerJob, argv: Sequence[str], env: Mapping[str, str]) -> float:
    """Run the engine's build (once more after a storage race); its time. Raises BuildFailed
    saying the Dockerfile build failed, with the engine's last line."""
    for attempt in range(1, STORAGE_RACE_ATTEMPTS + 1):
        last = _LastLines(job.sink)
        try:
            return await run_command(
                argv,
                cwd=job.plan.root,
                env=env,
                sink=last,
                timeout_s=job.time_left(),
                marker=str(job.workdir),
            )
        except BuildFailed as exc:
            if type(exc) is not BuildFailed:
                raise  # a timeout says so itself
            if attempt < STORAGE_RACE_ATTEMPTS and storage_race(last.lines):
                job.say(STORAGE_RACE_NOTE)
                continue
            code = str(exc).rsplit(" ", 1)[-1]
            detail = f": {last.lines[-1]}" if last.lines else ""
            raise BuildFailed(
                f"The Dockerfile build failed (exit {code}){detail}"
                if code.isdigit()
                else f"The Dockerfile build failed ({exc}){detail}"
            ) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


async def build_image(job: ContainerJob) -> BuiltImage:
    """Build, inspect and save the image of `job`; raises BuildFailed with the engine's error."""
    plan = job.plan
    assert plan.dockerfile is not None
    tag = build_tag(job.project, job.build_id)
    job.say(ENGINE_NOTE.format(engine=job.engine.name))
    marked = [name for name in plan.build_args if name in job.project_vars]
    unknown = [name for name in plan.build_args if name not in job.project_vars]
    if unknown:
        job.say(
            f"⚠ build_args names {', '.join(unknown)}, not among the project's build env vars: "
            "not passed"
        )
    secrets_dir = Path(tempfile.mkdtemp(prefix="secrets-", dir=job.workdir))
    cgroup = new_cgroup_parent() if not job.engine.is_docker else None
    try:
        secrets = _write_secrets(secrets_dir, job.project_vars)
        argv = build_argv(
            job.engine,
            dockerfile=plan.dockerfile,
            tag=tag,
            context=plan.root,
            labels={"launchdeck.project": job.project, "launchdeck.build": job.build_id},
            build_args=marked,
            secrets=secrets,
            cgroup_parent=cgroup,
        )
        job.say(f"▶ Image build: {shlex.join(argv)}")
        if marked:
            job.say(f"▶ Build arguments (visible in the image's history): {', '.join(marked)}")
        if secrets:
            job.say(
                "▶ Build secrets (RUN --mount=type=secret,id=NAME; never stored in the image): "
                + ", ".join(secrets)
            )
        build_env = {**job.env, **{name: job.project_vars[name] for name in marked}}
        took = await _engine_build(job, argv, build_env)
        job.say(f"✔ Image built in {took:.1f}s")
    finally:
        # Also when it was cancelled or timed out: its RUN step outlives the engine.
        if cgroup is not None:
            await asyncio.to_thread(end_cgroup, cgroup)
        shutil.rmtree(secrets_dir, ignore_errors=True)
    try:
        return await _release(job, tag)
    finally:
        await _retag_cache(job, tag)


async def _release(job: ContainerJob, tag: str) -> BuiltImage:
    """The release directory: the image saved as an OCI archive, and its manifest."""
    out: list[str] = []
    await _run(job, inspect_argv(job.engine, tag), _collect(out, job.sink))
    facts = parse_inspect("\n".join(out))
    if not facts.command:
        raise BuildFailed(
            "The image has no ENTRYPOINT or CMD: nothing to run (add CMD [...] to the Dockerfile)"
        )
    release = job.workdir / "release"
    archive = release / IMAGE_ARCHIVE
    archive.parent.mkdir(parents=True)
    job.say(f"▶ Saving the image ({facts.id[:19]})")
    await _run(job, save_argv(job.engine, tag, archive), job.sink)
    manifest = ReleaseManifest(
        kind="container",
        processes={"web": shlex.join(facts.command)},
        health_path=job.plan.health_path or "/",
        image=ContainerImage(
            archive=IMAGE_ARCHIVE, id=facts.id, ports=facts.ports, command=facts.command
        ),
    )
    (release / RELEASE_MANIFEST).write_bytes(msgspec.json.format(encode(manifest), indent=2))
    return BuiltImage(release, manifest, facts, archive.stat().st_size)


async def _retag_cache(job: ContainerJob, tag: str) -> None:
    """The project's `cache` tag onto the new image, then the build's tag removed: the layers
    stay for the next build. The image the cache tag leaves is removed when nothing else
    holds it (another tag, a container: the engine refuses then, which is fine)."""
    with contextlib.suppress(BuildFailed):  # the build's own time may be gone: not ours to fail
        cache = cache_tag(job.project)
        previous = await _quietly(job, inspect_argv(job.engine, cache))
        old = parse_inspect("\n".join(previous)) if previous else None
        if await _quietly(job, tag_argv(job.engine, tag, cache)) is None:
            return  # no image was built: nothing to keep
        await _quietly(job, rmi_argv(job.engine, tag))
        if old is not None and set(old.tags) <= {cache, f"localhost/{cache}"}:
            new = await _quietly(job, inspect_argv(job.engine, cache))
            if new and parse_inspect("\n".join(new)).id != old.id:
                await _quietly(job, rmi_argv(job.engine, old.id))
