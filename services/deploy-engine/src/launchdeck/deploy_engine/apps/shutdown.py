"""Stopping every app of a state directory, for whoever owns the platform's whole lifetime.

Apps outlive the deploy-engine on purpose (its restart must not take them down; the next engine
adopts them), as Caddy does. So stopping the engine does not stop them: `launchdeck dev` on
Ctrl-C, the test fixtures and an operator taking the machine's platform down call
`stop_apps(state_dir)` after the engine has stopped — like `caddy.stop_caddy`. Each app gets
SIGTERM (its process group), `grace_s` to exit, then SIGKILL with everything still carrying the
marker of an instance of this state dir; then the containers of its container apps are removed
(killing their `run` process leaves them running). From a shell (a container's stop hook, an
operator):

    python -m launchdeck.deploy_engine.apps.shutdown     # LAUNCHDECK_STATE_DIR's apps
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launchdeck.deploy_engine.apps.container import LIST_LABELLED, parse_labelled
from launchdeck.deploy_engine.apps.process import start_time_of
from launchdeck.deploy_engine.apps.records import InstanceStore
from launchdeck.libs.container_engine import resolve_engine
from launchdeck.libs.launcher.reaper import APP_MARKER_VAR, kill_marked, marker_of

APPS_DIR = "apps"


def stop_apps(state_dir: Path | str, grace_s: float = 5.0) -> int:
    """Stop the apps the deploy-engine of `state_dir` runs; how many were running."""
    store = InstanceStore(Path(state_dir).absolute() / APPS_DIR)
    leaders: list[int] = []
    for record in store.load_all():
        pid, start = record.pid, record.start_time
        if pid is None or start is None or start_time_of(pid) != start:
            continue
        if marker_of(pid, APP_MARKER_VAR) != store.marker(record.id):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            leaders.append(pid)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(start_time_of(p) is not None for p in leaders):
        time.sleep(0.02)
    kill_marked(lambda marker: store.instance_of_marker(marker) is not None, APP_MARKER_VAR)
    remove_containers(store)
    for record in store.load_all():
        store.remove(record.id)
    return len(leaders)


def remove_containers(store: InstanceStore) -> int:
    """Remove every container labelled as an instance of `store` (running or not)."""
    engine = resolve_engine(os.environ.get("LAUNCHDECK_CONTAINER_ENGINE"))
    if engine is None:
        return 0
    listed = subprocess.run(
        [engine, *LIST_LABELLED], capture_output=True, text=True, check=False, timeout=60
    )
    names = [
        name
        for name, marker in parse_labelled(listed.stdout).items()
        if store.instance_of_marker(marker) is not None
    ]
    if names:
        subprocess.run([engine, "rm", "-f", *names], capture_output=True, check=False, timeout=120)
    return len(names)


def main() -> None:
    """Stop the apps of `LAUNCHDECK_STATE_DIR` (stop the deploy-engine first)."""
    state_dir = os.environ.get("LAUNCHDECK_STATE_DIR") or ".launchdeck"
    grace_s = float(os.environ.get("LAUNCHDECK_APP_STOP_GRACE_S") or 30)
    stopped = stop_apps(state_dir, grace_s)
    sys.stdout.write(f"stopped {stopped} app process(es) of {Path(state_dir).absolute()}\n")


if __name__ == "__main__":
    main()
