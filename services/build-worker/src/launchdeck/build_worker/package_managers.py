"""Running yarn or pnpm on a worker where they are not installed.

A yarn or pnpm project should not need its package manager installed on the build machine, any
more than on a developer's: Yarn 2+ projects usually check their release in (`yarnPath` in
`.yarnrc.yml`), which Node.js runs as is, and Node.js ships corepack, which fetches the version
that `packageManager` in package.json names. So a command whose program is `yarn` or `pnpm`, not
found on the build PATH, runs through the project's own release, else through corepack; with
neither, the build fails saying so.

Corepack is pointed at the npm registry (`COREPACK_NPM_REGISTRY` of the build environment, else
npmjs.org) rather than repo.yarnpkg.com, so a worker that can reach only an npm registry or a
mirror of one still gets Yarn 2+.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from launchdeck.build_worker.detect import read_package_json
from launchdeck.build_worker.errors import BuildFailed

MANAGED = ("yarn", "pnpm")
DEFAULT_NPM_REGISTRY = "https://registry.npmjs.org"
_YARN_PATH = re.compile(r"""^yarnPath:\s*["']?([^"'#\s]+)["']?\s*(?:#.*)?$""", re.MULTILINE)


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the build environment
    note: str | None = None  # for the build log, when the command was rewritten


def yarn_release(root: Path) -> Path | None:
    """The project's checked-in Yarn (`yarnPath` in `.yarnrc.yml`), if it is inside `root`."""
    try:
        text = (root / ".yarnrc.yml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = _YARN_PATH.search(text)
    if match is None:
        return None
    release = (root / match.group(1)).resolve()
    return release if release.is_file() and release.is_relative_to(root.resolve()) else None


def declared_version(root: Path) -> str | None:
    """`packageManager` from package.json (e.g. `yarn@4.18.0`), for the log."""
    value = (read_package_json(root) or {}).get("packageManager")
    return value.split("+", 1)[0] if isinstance(value, str) else None


def invocation(argv: Sequence[str], root: Path, env: Mapping[str, str]) -> Invocation:
    """How to run `argv` in `root` with the build environment `env`."""
    program = argv[0]
    path = env.get("PATH", "")
    if program not in MANAGED or shutil.which(program, path=path):
        return Invocation(list(argv))
    release = yarn_release(root) if program == "yarn" else None
    if release is not None and shutil.which("node", path=path):
        shown = release.relative_to(root.resolve()).as_posix()
        return Invocation(
            ["node", str(release), *argv[1:]],
            note=f"yarn is not installed on this worker: running the project's own {shown}",
        )
    if shutil.which("corepack", path=path):
        declared = declared_version(root)
        wanted = f" ({declared} from package.json)" if declared else ""
        return Invocation(
            ["corepack", *argv],
            env={
                "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
                "COREPACK_NPM_REGISTRY": env.get("COREPACK_NPM_REGISTRY", DEFAULT_NPM_REGISTRY),
            },
            note=f"{program} is not installed on this worker: running it through corepack{wanted}",
        )
    raise BuildFailed(
        f"{program} is not installed on this build worker, and neither is corepack (part of "
        f"Node.js 16.9+) to fetch it: install {program} or Node.js on the worker, or set "
        "install_command and build_command to commands that are there"
    )
