"""Python apps: how their dependencies are installed into the release, and where they live.

Dependencies are installed with `pip install --target .launchdeck/site-packages` in the app's
root, so they travel inside the release and nothing is installed into the machine's Python. A
virtualenv would have been the other choice, but a venv is not relocatable: its `pyvenv.cfg`,
its `bin/python` link and every script's shebang hold the absolute paths of the directory it was
made in, and a release is built in one directory and runs from another (maybe on another
machine). A plain directory of packages is found through `PYTHONPATH` wherever it lies, run by
the machine's `python3` (the release's manifest puts both on the process's environment), and the
scripts pip writes into its `bin/` get a `#!/usr/bin/env python3` shebang (`release.py`).

What is installed:
- `requirements.txt` (it wins when both exist): `-r requirements.txt`, as on every PaaS;
- `pyproject.toml` with a `[build-system]`: the project itself (`.`), a packaged app, whose
  dependencies and entry points come with it;
- `pyproject.toml` without one (`uv init`'s default app, an app never meant to be packaged,
  where `pip install .` fails on a flat layout): the `[project] dependencies` list alone.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchdeck.build_worker.errors import BuildFailed

# Inside the app's root, hence inside the release; `.launchdeck/` also holds the manifest.
SITE_PACKAGES = ".launchdeck/site-packages"
SITE_BIN = f"{SITE_PACKAGES}/bin"
# The `python` shim (a release runs where the machine may have only `python3`).
SHIM_BIN = ".launchdeck/bin"
# Quiet, non-interactive pip for a build log (its progress bars are noise there).
PIP_ENV = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_INPUT": "1",
    "PIP_PROGRESS_BAR": "off",
}
INSTALL = ("python3", "-m", "pip", "install", "--target", SITE_PACKAGES)


@dataclass(frozen=True)
class PythonProject:
    source: str  # what declared it, for the log: "requirements.txt" or "pyproject.toml"
    install_command: str | None  # None: it declares no dependencies


def _pyproject(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"pyproject.toml is not valid TOML: {exc}") from None


def python_project(root: Path) -> PythonProject | None:
    """The Python app in `root` and how to install its dependencies; None when it is not one."""
    if (root / "requirements.txt").is_file():
        return PythonProject("requirements.txt", shlex.join([*INSTALL, "-r", "requirements.txt"]))
    path = root / "pyproject.toml"
    if not path.is_file():
        return None
    data = _pyproject(path)
    if "build-system" in data:
        return PythonProject("pyproject.toml", shlex.join([*INSTALL, "."]))
    project = data.get("project")
    deps = project.get("dependencies") if isinstance(project, dict) else None
    if deps is not None and (
        not isinstance(deps, list) or not all(isinstance(d, str) for d in deps)
    ):
        raise BuildFailed("pyproject.toml: [project] dependencies must be a list of strings")
    if not deps:
        return PythonProject("pyproject.toml", None)
    return PythonProject("pyproject.toml", shlex.join([*INSTALL, *deps]))
