"""`./launchdeck`, the wrapper at the repository root the README and the `make dev` banner use:
it must work verbatim from any directory, whether uv is on PATH, only `python3 -m uv` works
(after `make dev` installed uv into ~/.local/bin, often not on PATH), or neither (a virtualenv's
python3 first on PATH): then it runs the synced environment's `launchdeck`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WRAPPER = REPO_ROOT / "launchdeck"
VENV_BIN = str(Path(sys.executable).parent)


def python_can_run_uv(python: str) -> bool:
    check = [python, "-m", "uv", "--version"]
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def path_without_uv() -> list[str]:
    """The PATH directories but those holding a `uv` and this test's virtualenv (whose
    python3 cannot run `-m uv`)."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return [d for d in dirs if d and d != VENV_BIN and not (Path(d) / "uv").exists()]


def run_wrapper(
    wrapper: Path, cwd: Path, path: list[str], *args: str, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAUNCHDECK_", "UV_")) and k not in ("VIRTUAL_ENV", "PYTHON")
    }
    env.update(PATH=os.pathsep.join(path), **extra_env)
    return subprocess.run(
        [str(wrapper), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def assert_usage(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: launchdeck"), result.stdout
    assert "deploy" in result.stdout
    assert "rollback" in result.stdout


def test_wrapper_is_executable_bash() -> None:
    assert os.access(WRAPPER, os.X_OK)
    assert WRAPPER.read_text().startswith("#!/usr/bin/env bash\n")


def test_wrapper_runs_the_cli_through_python3_m_uv_from_anywhere(tmp_path: Path) -> None:
    """From another directory, with uv reachable only as `python3 -m uv`: usage, exit 0."""
    path = path_without_uv()
    python3 = shutil.which("python3", path=os.pathsep.join(path))
    if python3 is None or not python_can_run_uv(python3):
        pytest.skip("no python3 outside the virtualenv can run `python3 -m uv` here")
    assert_usage(run_wrapper(WRAPPER, tmp_path, path, "--help"))


def test_wrapper_runs_the_cli_through_uv_on_path(tmp_path: Path) -> None:
    """With a real `uv` on PATH and no python able to run `-m uv`, the wrapper uses that uv."""
    found = shutil.which("uv")
    if found is None:
        python3 = shutil.which("python3", path=os.pathsep.join(path_without_uv()))
        if python3 is None or not python_can_run_uv(python3):
            pytest.skip("no uv binary here")
        locate = [python3, "-c", "import uv; print(uv.find_uv_bin())"]
        found = subprocess.run(locate, capture_output=True, text=True, check=True).stdout.strip()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").symlink_to(found)
    result = run_wrapper(
        WRAPPER, tmp_path, [str(bin_dir), *path_without_uv()], "--help", PYTHON="false"
    )
    assert_usage(result)


def test_wrapper_without_uv_runs_the_synced_environment(tmp_path: Path) -> None:
    """Neither `uv` nor `python3 -m uv` (PYTHON cannot run it): the checkout's .venv runs."""
    result = run_wrapper(WRAPPER, tmp_path, path_without_uv(), "--help", PYTHON="false")
    assert_usage(result)


def test_wrapper_looks_for_dev_json_in_its_checkout(tmp_path: Path) -> None:
    """Run from another directory, the client commands read the wrapper's checkout's
    .launchdeck/dev.json (where `make dev` writes it), not the current directory's; an explicit
    LAUNCHDECK_STATE_DIR wins. (A copy of the wrapper in a stand-in checkout sharing this
    one's environment, so the checkout's own .launchdeck — maybe in use — plays no part.)"""
    checkout = (tmp_path / "checkout").resolve()
    checkout.mkdir()
    shutil.copy2(WRAPPER, checkout / "launchdeck")
    (checkout / ".venv").symlink_to(REPO_ROOT / ".venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    default = run_wrapper(
        checkout / "launchdeck", elsewhere, path_without_uv(), "projects", "list", PYTHON="false"
    )
    assert default.returncode == 1
    assert f"it writes {checkout / '.launchdeck' / 'dev.json'}" in default.stderr, default.stderr

    state = tmp_path / "state"
    chosen = run_wrapper(
        checkout / "launchdeck",
        elsewhere,
        path_without_uv(),
        "projects",
        "list",
        PYTHON="false",
        LAUNCHDECK_STATE_DIR=str(state),
    )
    assert chosen.returncode == 1
    assert f"it writes {state / 'dev.json'}" in chosen.stderr, chosen.stderr
