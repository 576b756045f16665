"""The operator's ceiling on build time limits: a project's or launchdeck.toml's `timeout_s`
above LAUNCHDECK_BUILD_MAX_TIMEOUT_S is clamped to it, and the build log says so."""

from __future__ import annotations

import re
import time
from pathlib import Path

from nats.js import JetStreamContext

from launchdeck.build_worker.handler import BuildWorker
from launchdeck.libs.jobs import Outcome
from tests.build_worker.streams import build_events, log_lines
from tests.build_worker.support import CommandFactory, delivery, make_settings
from tests.support import GitRepoFactory

# The build's own work (not a wait of the test's): longer than the ceiling, shorter than asked.
SLOW_BUILD = """\
[build]
build_command = "python3 -c 'import time; time.sleep(60)'"
output_dir = "."
timeout_s = 100000
"""


async def test_a_timeout_above_the_maximum_is_clamped_and_said(
    js: JetStreamContext,
    command: CommandFactory,
    make_git_repo: GitRepoFactory,
    tmp_path: Path,
) -> None:
    """launchdeck.toml asks for 100000 s (and the project for 50000 s); with a maximum of 3 s the
    build is stopped at 3 s for its time limit, after a line saying its limit was clamped."""
    worker = BuildWorker(js, make_settings(tmp_path / "builds", max_timeout_s=3))
    repo = make_git_repo({"launchdeck.toml": SLOW_BUILD, "index.html": "<p>hi</p>"})
    cmd = command(repo, timeout_s=50000)

    started = time.monotonic()
    assert await worker.handle_build(cmd, delivery()) is Outcome.ACK
    took = time.monotonic() - started

    lines = [line.line for line in await log_lines(js, cmd.build_id)]
    assert (
        "⚠ timeout_s = 100000 is above this platform's maximum: the build's time limit is 3s"
    ) in lines
    events = await build_events(js, cmd.project_id, cmd.build_id)
    assert events[-1].status == "failed"
    assert re.search(r"time limit\b.*\b3s\b", events[-1].error or ""), events[-1].error
    assert took < 30


def test_time_limit_is_the_request_or_the_default_never_above_the_maximum(tmp_path: Path) -> None:
    """Within the maximum a request stands; none means the default; above, the maximum."""
    settings = make_settings(tmp_path, timeout_s=1800, max_timeout_s=3600)
    assert settings.time_limit(600) == (600, False)
    assert settings.time_limit(None) == (1800, False)
    assert settings.time_limit(3600) == (3600, False)
    assert settings.time_limit(3601) == (3600, True)
