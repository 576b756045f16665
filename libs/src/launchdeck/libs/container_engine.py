"""Which container engine (podman or docker) a service drives, and what of its own environment
the engine gets. One rule for the build-worker (image builds) and the deploy-engine (running
container apps), both set by `LAUNCHDECK_CONTAINER_ENGINE`: a program name or path; unset, podman
on PATH, else docker; `none` turns container apps off on that service."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

SETTING = "LAUNCHDECK_CONTAINER_ENGINE"
ENGINE_OFF = "none"
AUTO_ENGINES = ("podman", "docker")
# The service's variables the engine itself needs (rootless storage under HOME, its
# configuration, a remote engine, proxies for pulling base images) — never the platform's
# credentials nor a project's values.
ENGINE_ENV = (
    "PATH",
    "HOME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "CONTAINERS_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "REGISTRY_AUTH_FILE",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def engine_off(setting: str | None) -> bool:
    return (setting or "").strip().lower() == ENGINE_OFF


def resolve_engine(setting: str | None) -> str | None:
    """The absolute path of the engine `setting` names (unset: podman, else docker, on PATH);
    None when it is off or not found."""
    value = (setting or "").strip()
    if engine_off(value):
        return None
    for name in (value,) if value else AUTO_ENGINES:
        path = shutil.which(name)
        if path is not None:
            return str(Path(path).absolute())
    return None


def is_docker(path: str) -> bool:
    """docker's command line (no `--layers`, `rm -f` without `-t`…) rather than podman's."""
    return Path(path).name.startswith("docker")


def engine_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The part of `env` (a service's environment) the engine gets."""
    return {name: env[name] for name in ENGINE_ENV if name in env}
