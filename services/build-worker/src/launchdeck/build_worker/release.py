"""Making a process app's root into a release that runs anywhere: its manifest, the `python`
shim, relocatable Python scripts, and the environment its build commands run with.

A process release is the app's root directory as the build left it (dependencies included),
plus `.launchdeck/`: `release.json` (the `ReleaseManifest`: process types, release command,
health path, runtime versions, and the environment the deploy-engine gives its processes),
`bin/python` (a shim running the machine's `python3`, so `python` works where only `python3` is
installed) and, for a Python app, `site-packages/` (`python_app.py`).

This code runs in the worker, outside the sandbox, over a tree the build wrote: it never follows
a link the build left (`_own_dir` replaces one standing where `.launchdeck/` or its directories
belong, files are replaced rather than written in place), so a build cannot make the worker
write outside its checkout.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

import msgspec

from launchdeck.build_worker.detect import BuildPlan
from launchdeck.build_worker.python_app import PIP_ENV, SHIM_BIN, SITE_BIN, SITE_PACKAGES
from launchdeck.contracts.codec import encode
from launchdeck.contracts.messages import RELEASE_MANIFEST, Artifact, ReleaseManifest

# `python` → the machine's `python3`, found on PATH after the shim's own directory.
PYTHON_SHIM = '#!/bin/sh\nexec python3 "$@"\n'
# Where builds get the shim: in the build's HOME, outside what a static site ships.
BUILD_SHIM_BIN = ".launchdeck/bin"
NODE_BIN = "node_modules/.bin"
# Defaults for a release's processes (the project's own variables win over them).
NODE_ENV = {"NODE_ENV": "production"}
PYTHON_ENV = {"PYTHONUNBUFFERED": "1"}  # an app's log lines reach its log as they are printed
ENV_SCRIPT_SHEBANG = b"#!/usr/bin/env python3\n"
# The first line pip writes into a script it installs: the interpreter's absolute path …
_PYTHON_SHEBANG = re.compile(rb"^#![ \t]*/\S*/python[0-9.]*[ \t]*\r?\n")
# … or, when that path is too long or has spaces, a shell line that execs it.
_SH_EXEC_SHEBANG = re.compile(rb"^#!/bin/sh\r?\n'''exec' .*\r?\n' '''\r?\n")


def _own_dir(root: Path, rel: str) -> Path:
    """`root / rel` as real directories, each component made one if the build left a link or a
    file there (removed: the link, never what it points to)."""
    path = root
    for part in Path(rel).parts:
        path = path / part
        try:
            st = path.lstat()
        except FileNotFoundError:
            path.mkdir()
            continue
        if not stat.S_ISDIR(st.st_mode):  # a link (to anything) or a file
            path.unlink()
            path.mkdir()
    return path


def _replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write `path` anew (a temporary file renamed over it): never through a link or a hard
    link the build left there."""
    temp = path.with_name(f".{path.name}.launchdeck-tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(temp, mode)  # not narrowed by the umask
    os.replace(temp, path)


def write_shim(directory: Path) -> Path:
    """The `python` shim in `directory` (made a real directory if need be)."""
    _replace_file(directory / "python", PYTHON_SHIM.encode(), 0o755)
    return directory


def build_env(plan: BuildPlan, home: Path, env: Mapping[str, str]) -> dict[str, str]:
    """What the app's build commands get on top of the build environment `env`: the `python`
    shim first on PATH and, for a Python app, its dependencies (once installed) on PYTHONPATH
    and their scripts on PATH, so a build step (`manage.py collectstatic`) runs with them."""
    front = [str(write_shim(_own_dir(home, BUILD_SHIM_BIN)))]
    extra: dict[str, str] = {}
    if "python" in plan.runtimes:
        front.append(str(plan.root / SITE_BIN))
        extra["PYTHONPATH"] = str(plan.root / SITE_PACKAGES)
        extra.update({k: v for k, v in PIP_ENV.items() if k not in env})
    path = env.get("PATH", "")
    extra["PATH"] = os.pathsep.join([*front, path] if path else front)
    return extra


def manifest_for(plan: BuildPlan, runtime: Mapping[str, str]) -> ReleaseManifest:
    """The manifest of `plan`'s release (a process app), with the `runtime` versions used."""
    env: dict[str, str] = {}
    path = [SHIM_BIN]
    paths: dict[str, list[str]] = {}
    if "python" in plan.runtimes:
        env.update(PYTHON_ENV)
        path.append(SITE_BIN)
        paths["PYTHONPATH"] = [SITE_PACKAGES]
    if "node" in plan.runtimes:
        env.update(NODE_ENV)
        path.append(NODE_BIN)
    return ReleaseManifest(
        kind="process",
        processes=dict(plan.processes),
        release_command=plan.release_command,
        health_path=plan.health_path or "/",
        runtime=dict(runtime),
        env=env,
        paths={"PATH": path, **paths},
    )


def relocate_scripts(root: Path) -> int:
    """Point the scripts pip installed into `.launchdeck/site-packages/bin` (gunicorn, uvicorn,
    …) at `python3` on PATH instead of the build's interpreter path; returns how many."""
    bin_dir = root / SITE_BIN
    try:
        if not stat.S_ISDIR(bin_dir.lstat().st_mode) or bin_dir.resolve() != bin_dir:
            return 0  # a link the build made: not followed
    except FileNotFoundError:
        return 0
    changed = 0
    with os.scandir(bin_dir) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            data = path.read_bytes()
            match = _PYTHON_SHEBANG.match(data) or _SH_EXEC_SHEBANG.match(data)
            if match is None:
                continue
            mode = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            _replace_file(path, ENV_SCRIPT_SHEBANG + data[match.end() :], mode)
            changed += 1
    return changed


def prepare_release(plan: BuildPlan, runtime: Mapping[str, str]) -> ReleaseManifest:
    """Turn the built root of a process app into its release: scripts relocated, the `python`
    shim and the manifest written into `.launchdeck/`."""
    relocate_scripts(plan.root)
    write_shim(_own_dir(plan.root, SHIM_BIN))
    manifest = manifest_for(plan, runtime)
    target = _own_dir(plan.root, str(Path(RELEASE_MANIFEST).parent)) / Path(RELEASE_MANIFEST).name
    _replace_file(target, msgspec.json.format(encode(manifest), indent=2) + b"\n", 0o644)
    return manifest


def describe(artifact: Artifact, manifest: ReleaseManifest) -> Artifact:
    """`artifact` (as stored) with what its manifest says, for the build's `succeeded` event."""
    web = manifest.processes.get("web")
    return msgspec.structs.replace(
        artifact,
        kind=manifest.kind,
        start_command=web,
        health_path=manifest.health_path if web is not None else None,
        processes=dict(manifest.processes),
        release_command=manifest.release_command,
    )


def processes_line(manifest: ReleaseManifest) -> str:
    """The build log's account of what the release runs."""
    parts = [f"{name}: {command}" for name, command in manifest.processes.items()]
    if manifest.release_command:
        parts.append(f"release: {manifest.release_command}")
    return "▶ Processes: " + " · ".join(parts)
