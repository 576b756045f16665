"""A process release's manifest, read back: what to run and with which environment.

The build-worker writes `RELEASE_MANIFEST` into every process release (`ReleaseManifest`); whoever
starts the release's processes (the deploy-engine, a test, an operator by hand) reads it here, so
the rules for turning it into an environment live in one place: the manifest's `env` are
defaults the caller's variables override, and each of its `paths` (directories inside the
release) is made absolute against where the release was extracted and put in front of its
variable. Paths are stored relative because a release is built in one directory and runs from
another (`releases/<project>/<build>/`), maybe on another machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import msgspec

from launchdeck.contracts.codec import decode
from launchdeck.contracts.messages import RELEASE_MANIFEST, ReleaseManifest

# PATH when the caller's environment has none: a process still finds the machine's programs.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ManifestError(ValueError):
    """The release's manifest is unreadable, or names a path outside the release."""


def read_manifest(release_dir: Path) -> ReleaseManifest | None:
    """The manifest of the release extracted at `release_dir`; None for a release without one
    (a static release). Raises ManifestError when it is there but unusable."""
    path = release_dir / RELEASE_MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError(f"{RELEASE_MANIFEST} cannot be read: {exc.strerror}") from None
    try:
        manifest = decode(data, ReleaseManifest)
    except msgspec.DecodeError as exc:
        raise ManifestError(f"{RELEASE_MANIFEST} is not a valid manifest: {exc}") from None
    for dirs in manifest.paths.values():
        for rel in dirs:
            _inside(rel)
    return manifest


def _inside(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise ManifestError(f"{RELEASE_MANIFEST}: path {rel!r} is not inside the release")
    return path


def process_env(
    manifest: ReleaseManifest, release_dir: Path, env: Mapping[str, str]
) -> dict[str, str]:
    """The environment of one of the release's processes (or its release command): `env` (the
    caller's: PATH, HOME, the project's variables, PORT…) over the manifest's defaults, with
    the manifest's directories in front of their search paths."""
    out = {**manifest.env, **env}
    for name, dirs in manifest.paths.items():
        front = [str(release_dir / _inside(rel)) for rel in dirs]
        rest = env.get(name) or (DEFAULT_PATH if name == "PATH" else "")
        out[name] = os.pathsep.join([*front, rest] if rest else front)
    return out
