"""Container apps: a release whose manifest says `kind: "container"` runs its image with podman
(or docker), under the same machinery as a process app (fleet.py).

The instance's process is the engine's *foreground* `run`: it stays attached to the container,
exits with it and forwards signals to it, so `AppProcess` watches it like any app (pidfd, output
FIFOs, adoption by a restarted engine through its pid, start time and marker). The container is
the sandbox (no bubblewrap around it). What differs is here:

- the image is loaded from the release's OCI archive (`<engine> load`) the first time one of its
  instances starts, once per image even when deploys race (a lock per image id);
- `run` publishes `127.0.0.1:<PORT>:<PORT>`, caps memory (no swap beyond it) and CPUs, labels the
  container with the project and the instance's marker, and gets the app's env vars from a 0600
  file in the instance directory (`--env-file`): values never appear in argv, which `ps` shows;
- stopping: SIGTERM reaches the container through `run`; after the grace period
  `<engine> rm -f -t 0` — killing `run` alone would leave the container running (conmon keeps it);
- an ended container is inspected before it is removed (not `--rm`), so a crash says whether it
  was out of memory;
- recovery removes containers labelled as one of this apps directory's instances that no known
  instance owns (strays), as it kills stray processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from launchdeck.contracts.messages import AppResources, ContainerImage, ReleaseManifest
from launchdeck.deploy_engine.apps.process import AppProcess, SpawnFailed
from launchdeck.libs.container_engine import (
    engine_environment,
    engine_off,
    is_docker,
)
from launchdeck.libs.launcher.release import ManifestError, read_manifest
from launchdeck.libs.logging import get_logger

log = get_logger(__name__)

PROJECT_LABEL = "launchdeck.project"
INSTANCE_LABEL = "launchdeck.instance"  # the instance's marker (its directory)
ENV_FILE = "container.env"
COMMAND_TIMEOUT_S = 120.0  # `load` of a large image; every other command takes milliseconds
SIGKILL_EXIT = 137  # 128 + SIGKILL: how a container's init killed from outside exits


class NoContainerEngine(SpawnFailed):
    """A container release, and no engine to run it."""


def no_engine_reason(setting: str | None) -> str:
    if engine_off(setting):
        why = "container apps are disabled here (LAUNCHDECK_CONTAINER_ENGINE=none)"
    elif setting:
        why = f"the container engine {setting!r} (LAUNCHDECK_CONTAINER_ENGINE) is not installed"
    else:
        why = "no container engine is installed on the deploy-engine's machine"
    return (
        f"this release runs as a container, but {why}: install podman (apt-get install podman) "
        "or docker, or set LAUNCHDECK_CONTAINER_ENGINE to one"
    )


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpus: float

    @classmethod
    def of(cls, resources: AppResources, default: Limits) -> Limits:
        return cls(
            memory_mb=resources.memory_mb or default.memory_mb,
            cpus=resources.cpus or default.cpus,
        )


def container_name(instance_id: str) -> str:
    return f"launchdeck-{instance_id}"


def container_environment(
    manifest: ReleaseManifest, project_vars: Mapping[str, str], platform: Mapping[str, str]
) -> dict[str, str]:
    """What the container gets: the manifest's defaults, the project's vars, the platform's
    (PORT, LAUNCHDECK_*); nothing of this machine (the image has its own PATH and HOME)."""
    return {**manifest.env, **project_vars, **platform}


def write_env_file(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Write `env` as an env file (0600) for `run --env-file`; the variables a line cannot hold
    (a value with a newline) are returned instead, to be passed through `run`'s own
    environment (`-e NAME` without a value): never in argv either way."""
    lines: list[str] = []
    inherited: dict[str, str] = {}
    for name, value in env.items():
        if "\n" in value or "\r" in value or "\0" in value:
            inherited[name] = value.replace("\0", "")
        else:
            lines.append(f"{name}={value}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("".join(lines))
    return inherited


def release_image(release: Path) -> str | None:
    """The image id a container release runs (None: not a container release, or unreadable)."""
    try:
        manifest = read_manifest(release)
    except ManifestError:
        return None
    if manifest is None or manifest.kind != "container" or manifest.image is None:
        return None
    return manifest.image.id


def images_in(releases: Iterable[Path]) -> set[str]:
    return {image for release in releases if (image := release_image(release))}


# `<engine> ps` of every container carrying an instance label, a line `name marker` each.
LIST_LABELLED = (
    "ps",
    "-a",
    "--filter",
    f"label={INSTANCE_LABEL}",
    "--format",
    f'{{{{.Names}}}} {{{{index .Labels "{INSTANCE_LABEL}"}}}}',
)


def parse_labelled(out: str) -> dict[str, str]:
    """`LIST_LABELLED`'s output as container name → instance marker."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, _, marker = line.strip().partition(" ")
        if name and marker:
            found[name] = marker
    return found


class ContainerEngine:
    """One container engine binary (podman or docker) and what the fleet asks of it."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.is_docker = is_docker(binary)
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._present: set[str] = set()

    def engine_env(self) -> dict[str, str]:
        return engine_environment(os.environ)

    async def _run(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[int, str]:
        """Run `<engine> args…` to its end: exit code and output (stdout and stderr)."""
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.engine_env(),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return -1, f"{Path(self.binary).name} {args[0]} did not finish within {timeout_s:g}s"
        return proc.returncode or 0, out.decode("utf-8", "replace").strip()

    # --- images ----------------------------------------------------------------------------

    async def ensure_image(self, release: Path, image: ContainerImage) -> None:
        """The release's image is in the engine's storage (loaded from its archive if not).
        Raises SpawnFailed with the engine's words."""
        if image.id in self._present:
            return
        lock = self._image_locks.setdefault(image.id, asyncio.Lock())
        async with lock:
            if image.id in self._present:
                return
            code, _ = await self._run("image", "inspect", "--format", "{{.Id}}", image.id)
            if code != 0:
                archive = release / image.archive
                if not archive.is_file():
                    raise SpawnFailed(f"the release has no image archive ({image.archive})")
                log.info("container_image_loading", image=image.id, archive=str(archive))
                code, out = await self._run("load", "-i", str(archive))
                if code != 0:
                    raise SpawnFailed(f"its image could not be loaded: {out[-2000:]}")
                code, out = await self._run("image", "inspect", "--format", "{{.Id}}", image.id)
                if code != 0:
                    raise SpawnFailed(
                        f"the release's archive did not hold its image {image.id}: {out[-500:]}"
                    )
                log.info("container_image_loaded", image=image.id)
            self._present.add(image.id)

    async def remove_image(self, image_id: str) -> bool:
        """Remove an image no kept release uses (the engine refuses one a container uses)."""
        self._present.discard(image_id)
        code, out = await self._run("rmi", image_id)
        if code != 0 and "image not known" not in out and "No such image" not in out:
            log.info("container_image_kept", image=image_id, reason=out[-300:])
            return False
        return code == 0

    # --- containers ------------------------------------------------------------------------

    def run_argv(
        self,
        *,
        name: str,
        image: str,
        port: int | None,
        env_file: Path,
        inherited: list[str],
        limits: Limits,
        project: str,
        marker: str,
        stop_grace_s: float,
    ) -> list[str]:
        argv = [self.binary, "run", "--name", name]
        if not self.is_docker:
            argv.append("--replace")  # a leftover of the same instance (docker: removed first)
        if port is not None:
            argv += ["-p", f"127.0.0.1:{port}:{port}", "-e", f"PORT={port}"]
        argv += ["--env-file", str(env_file)]
        for var in inherited:
            argv += ["-e", var]  # the value comes from run's environment
        argv += [
            "--memory",
            f"{limits.memory_mb}m",
            "--memory-swap",
            f"{limits.memory_mb}m",
            "--cpus",
            f"{limits.cpus:g}",
            "--label",
            f"{PROJECT_LABEL}={project}",
            "--label",
            f"{INSTANCE_LABEL}={marker}",
            "--stop-timeout",
            str(max(0, round(stop_grace_s))),
            image,
        ]
        return argv

    async def remove(self, name: str) -> None:
        """Kill and remove the container (nothing when it is gone already)."""
        if self.is_docker:
            await self._run("rm", "-f", name)
        else:
            await self._run("rm", "-f", "-t", "0", name)

    async def exit_state(self, name: str) -> tuple[bool, int] | None:
        """(killed for lack of memory, exit code) of an ended container; None when unknown."""
        code, out = await self._run(
            "inspect", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}", name
        )
        parts = out.split()
        if code != 0 or len(parts) != 2:
            return None
        with contextlib.suppress(ValueError):
            return parts[0] == "true", int(parts[1])
        return None

    async def states(self, names: Iterable[str]) -> dict[str, str]:
        """Each named container's state (`running`, `exited`…) as the engine reports it; a
        name it does not know is left out. Quick (the asker waits): 1.5 s at most."""
        wanted = list(names)
        if not wanted:
            return {}
        _code, out = await self._run(
            "inspect", "--format", "{{.Name}} {{.State.Status}}", *wanted, timeout_s=1.5
        )
        found: dict[str, str] = {}
        for line in out.splitlines():
            name, _, state = line.strip().lstrip("/").partition(" ")
            if name in wanted and state:
                found[name] = state
        return found

    async def labelled(self) -> dict[str, str]:
        """Every container (running or not) carrying an instance label: name → marker."""
        code, out = await self._run(*LIST_LABELLED)
        if code != 0:
            log.warning("containers_not_listed", error=out[-300:])
            return {}
        return parse_labelled(out)


class ContainerProcess(AppProcess):
    """A container app's `run` process: stopping and ending also take care of the container."""

    engine: ContainerEngine
    name: str
    env_file: Path
    memory_mb: int
    _described: str | None = None

    def bind(self, engine: ContainerEngine, name: str, env_file: Path, memory_mb: int) -> None:
        self.engine, self.name, self.env_file, self.memory_mb = engine, name, env_file, memory_mb

    def forget_env_file(self) -> None:
        """The container has read its env file: it need not stay on disk."""
        self.env_file.unlink(missing_ok=True)

    async def exit_description(self) -> str:
        """How the container ended (`was killed: out of memory (limit 64 MiB)`); the container
        is removed once that is read."""
        await self.exited.wait()
        if self._described is not None:
            return self._described
        state = await self.engine.exit_state(self.name)
        await self.engine.remove(self.name)
        self.forget_env_file()
        limit = f"limit {self.memory_mb} MiB"
        if state is None:
            how = await super().exit_description()
        elif state[0]:
            how = f"was killed: out of memory ({limit})"
        elif state[1] == SIGKILL_EXIT:
            # The container's init ignores a SIGKILL from inside it and the engine sent none:
            # the kernel's OOM killer (cgroup v1 engines do not always tell), or someone on
            # the host.
            how = f"was killed by SIGKILL: out of memory, most likely ({limit})"
        else:
            how = f"exited with code {state[1]}"
        self._described = how
        return how

    # `stop` is AppProcess's: SIGTERM reaches the container through `run` (it forwards it);
    # after the grace, `kill` below removes the container by force.
    async def kill(self) -> None:
        await self.engine.remove(self.name)
        self.forget_env_file()
        await super().kill()
