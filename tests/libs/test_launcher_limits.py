"""Resource limits of user code (`libs.launcher.limits`): read from settings, set in the child
before it runs — a command started through the launcher runs under them, sandboxed or not, and
cannot raise them again."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from launchdeck.libs.launcher.launch import launch
from launchdeck.libs.launcher.limits import MIB, ResourceLimits
from launchdeck.libs.launcher.sandbox import detect_sandbox
from launchdeck.libs.settings import SettingsError

REPORT = """
import json, resource
names = ("RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC")
print(json.dumps({n: resource.getrlimit(getattr(resource, n)) for n in names}))
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    print("raised")
except ValueError:
    print("refused")
"""


def test_settings_are_read_per_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAUNCHDECK_APP_LIMIT_AS_MB", "2048")
    monkeypatch.setenv("LAUNCHDECK_APP_LIMIT_NOFILE", "0")  # 0: the service's own
    limits = ResourceLimits.from_env("LAUNCHDECK_APP")
    assert limits == ResourceLimits(
        address_space_bytes=2048 * MIB, open_files=None, processes=ResourceLimits().processes
    )
    assert ResourceLimits.from_env("LAUNCHDECK_BUILD") == ResourceLimits()
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NPROC", "-1")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BUILD_LIMIT_NPROC"):
        ResourceLimits.from_env("LAUNCHDECK_BUILD")
    monkeypatch.setenv("LAUNCHDECK_BUILD_LIMIT_NPROC", "many")
    with pytest.raises(SettingsError, match="must be an integer"):
        ResourceLimits.from_env("LAUNCHDECK_BUILD")


def test_a_limit_above_the_services_own_hard_limit_is_lowered_to_it() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = ResourceLimits(address_space_bytes=None, open_files=hard * 4, processes=None)
    assert limits.rlimits() == ((resource.RLIMIT_NOFILE, hard),)
    assert ResourceLimits(None, None, None).preexec() is None


@pytest.mark.parametrize("sandboxed", [False, True])
async def test_a_launched_command_runs_under_its_limits_and_cannot_raise_them(
    tmp_path: Path, sandboxed: bool
) -> None:
    limits = ResourceLimits(address_space_bytes=3 * 1024 * MIB, open_files=1024, processes=2000)
    sandbox = None
    if sandboxed:
        found = detect_sandbox("auto")
        assert found.enabled, "bubblewrap is required for this test (make sync installs it)"
        (tmp_path / "home").mkdir()
        sandbox = found.for_build(workdir=tmp_path, writable=())
    src = tmp_path / "src"  # the part of a build's directory its sandbox shows
    src.mkdir()
    (src / "report.py").write_text(REPORT)
    launched = await launch(
        ["python3", "report.py"],
        cwd=src,
        env={"PATH": os.environ["PATH"]},
        sandbox=sandbox,
        limits=limits,
    )
    assert launched.process.stdout is not None
    out = (await launched.process.stdout.read()).decode().splitlines()
    await launched.exited.wait()
    seen = json.loads(out[0])
    assert seen == {
        "RLIMIT_AS": [3 * 1024 * MIB] * 2,
        "RLIMIT_NOFILE": [1024, 1024],
        "RLIMIT_NPROC": [2000, 2000],
    }
    assert out[1] == "refused"  # soft and hard are both set: no way back up
