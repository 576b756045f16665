"""The container engine a Dockerfile app is built with (podman, or docker), and the command lines
the build gives it. Pure logic: finding the program, composing argv, reading `image inspect`.

`LAUNCHDECK_CONTAINER_ENGINE` names it (a path or a name on PATH); unset, podman is preferred,
then docker; `none` turns container builds off. A worker without one still builds every other
kind of app: only a container app fails, saying what to install.

Only podman is exercised by the tests. docker differs in three places handled here: it has no
`--layers` (BuildKit always caches), its `save` writes its own archive format (which `podman load`
reads as well), and it needs BuildKit for `--secret`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from launchdeck.build_worker.errors import BuildFailed
from launchdeck.libs.container_engine import (
    engine_environment,
    engine_off,
    is_docker,
    resolve_engine,
)

INSTALL_HINT = (
    "install podman on the build-worker's machine (Debian/Ubuntu: apt-get install podman; "
    "deploy/images/setup-podman.sh configures it) or point LAUNCHDECK_CONTAINER_ENGINE at "
    "podman or docker"
)
# Where images are tagged while a build makes them; `<project>:cache` keeps the project's last
# image (and so its layers, the cache of its next build) after the build's own tag is removed.
TAG_REPOSITORY = "launchdeck-build"
CACHE_TAG = "cache"
_TAG_UNSAFE = re.compile(r"[^a-z0-9._-]+")


class EngineMissing(BuildFailed):
    """A container app on a worker without a container engine."""


@dataclass(frozen=True)
class Engine:
    path: str  # the program, absolute
    name: str  # "podman" or "docker" (what its command line looks like)

    @property
    def is_docker(self) -> bool:
        return self.name == "docker"


def find_engine(setting: str | None) -> Engine | None:
    """The engine `setting` names (None: podman, else docker, on PATH); None when it is off
    (`none`) or nothing was found. An engine named but absent is an error (`EngineMissing`):
    the operator asked for it."""
    path = resolve_engine(setting)
    if path is not None:
        return Engine(path, "docker" if is_docker(path) else "podman")
    if (setting or "").strip() and not engine_off(setting):
        raise EngineMissing(
            f"LAUNCHDECK_CONTAINER_ENGINE is {setting!r}, which is not an executable program on "
            f"this build-worker: {INSTALL_HINT}"
        )
    return None


def require_engine(setting: str | None) -> Engine:
    """The engine to build a Dockerfile app with, or a readable failure saying what to do."""
    engine = find_engine(setting)
    if engine is not None:
        return engine
    if engine_off(setting):
        raise EngineMissing(
            "This app builds from a Dockerfile, but container builds are turned off on this "
            f"build-worker (LAUNCHDECK_CONTAINER_ENGINE=none): {INSTALL_HINT}"
        )
    raise EngineMissing(
        "This app builds from a Dockerfile, but this build-worker has no container engine "
        f"(neither podman nor docker is on its PATH): {INSTALL_HINT}"
    )


def engine_env(base: Mapping[str, str], worker_env: Mapping[str, str]) -> dict[str, str]:
    """`base` (the build's environment made from nothing, without the project's variables) plus
    the worker's variables the engine needs (`libs.container_engine.ENGINE_ENV`: HOME among
    them — a rootless engine keeps its storage, and the layer cache, under it); PATH stays the
    build's."""
    own = engine_environment(worker_env)
    own.pop("PATH", None)
    return {**base, **own}


def image_repository(project: str) -> str:
    """`launchdeck-build/<project>`, the project's name made a valid image name."""
    safe = _TAG_UNSAFE.sub("-", project.lower()).strip("._-") or "app"
    return f"{TAG_REPOSITORY}/{safe}"


def build_tag(project: str, build_id: str) -> str:
    return f"{image_repository(project)}:{build_id.replace('-', '')[:12]}"


def cache_tag(project: str) -> str:
    return f"{image_repository(project)}:{CACHE_TAG}"


def build_argv(
    engine: Engine,
    *,
    dockerfile: Path,
    tag: str,
    context: Path,
    labels: Mapping[str, str],
    build_args: Sequence[str],
    secrets: Mapping[str, Path],
    cgroup_parent: str | None = None,
) -> list[str]:
    """`<engine> build …`. Build arguments are given by name only: the engine reads their values
    from its environment, so no value is on the command line. Secrets are files (`secrets`:
    id → path), mounted by `RUN --mount=type=secret,id=NAME` and never stored in a layer."""
    argv = [engine.path, "build", "--file", str(dockerfile), "--tag", tag]
    if not engine.is_docker:
        argv.append("--layers")  # keep intermediate images: the next build's cache
        if cgroup_parent is not None:  # where its RUN steps are found (`container_leftovers`)
            argv += ["--cgroup-parent", cgroup_parent]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    for name in build_args:
        argv += ["--build-arg", name]
    for name, path in secrets.items():
        argv += ["--secret", f"id={name},src={path}"]
    argv.append(str(context))
    return argv


def inspect_argv(engine: Engine, image: str) -> list[str]:
    return [engine.path, "image", "inspect", image]


def save_argv(engine: Engine, image: str, archive: Path) -> list[str]:
    if engine.is_docker:
        return [engine.path, "save", "-o", str(archive), image]
    return [engine.path, "save", "--format", "oci-archive", "-o", str(archive), image]


def tag_argv(engine: Engine, image: str, tag: str) -> list[str]:
    return [engine.path, "tag", image, tag]


def rmi_argv(engine: Engine, image: str) -> list[str]:
    return [engine.path, "rmi", image]


@dataclass(frozen=True)
class ImageFacts:
    """What `image inspect` says of a built image."""

    id: str  # sha256:<hex>
    ports: list[int]  # EXPOSEd TCP ports
    command: list[str]  # ENTRYPOINT + CMD
    size: int  # bytes, unpacked
    tags: list[str]


def parse_inspect(output: str) -> ImageFacts:
    """The first image of `image inspect`'s JSON (podman and docker write the same fields)."""
    try:
        data = json.loads(output)
        image = data[0] if isinstance(data, list) else data
        config = image.get("Config") or {}
        raw_id = str(image["Id"])
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        raise BuildFailed(f"Could not read the built image's description: {exc}") from None
    ports: set[int] = set()
    for spec in config.get("ExposedPorts") or {}:
        number, _, proto = str(spec).partition("/")
        if proto in ("", "tcp") and number.isdigit():
            ports.add(int(number))
    command = [str(part) for part in (config.get("Entrypoint") or [])]
    command += [str(part) for part in (config.get("Cmd") or [])]
    return ImageFacts(
        id=raw_id if raw_id.startswith("sha256:") else f"sha256:{raw_id}",
        ports=sorted(ports),
        command=command,
        size=int(image.get("Size") or 0),
        tags=[str(t) for t in image.get("RepoTags") or []],
    )


def worker_environment() -> dict[str, str]:
    """This process's environment (the part `engine_env` reads)."""
    return engine_environment(os.environ)
