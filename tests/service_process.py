"""A service started as users start it (`python -m launchdeck.<service>`), its JSON log lines read
back from a file, for tests of start-up and shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.polling import eventually

SERVICE_MODULES = {
    "control-api": "launchdeck.control_api",
    "build-worker": "launchdeck.build_worker",
    "deploy-engine": "launchdeck.deploy_engine",
    "generator": "launchdeck.generator",
}


def service_env(service: str, state_dir: Path, **env: str) -> dict[str, str]:
    """The environment `service` needs to pass its settings (with JSON logs), plus `env`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAUNCHDECK_", "NATS_", "DATABASE_")) and k not in ("NO_COLOR",)
    }
    base.update(LAUNCHDECK_STATE_DIR=str(state_dir), LAUNCHDECK_LOG_FORMAT="json")
    if service == "control-api":
        base.update(
            DATABASE_URL="postgresql://launchdeck@127.0.0.1:1/launchdeck",
            LAUNCHDECK_SECRET_KEY="test-secret-key-of-a-reasonable-length-for-hs256!",
        )
    return {**base, **env}


class ServiceProcess:
    def __init__(self, service: str, env: dict[str, str], log_path: Path) -> None:
        self.service = service
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", SERVICE_MODULES[self.service]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (other lines, e.g. a library's plain text, are skipped)."""
        found = []
        for line in self.output.splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line still being written
        return found

    async def wait_for(self, event: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first log line of `event` whose fields include `fields`; fails early if the
        process exits meanwhile."""

        def found() -> list[dict[str, Any]]:
            assert self.proc is not None
            matching = [
                entry
                for entry in self.events()
                if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items())
            ]
            if not matching:
                assert self.proc.poll() is None, f"{self.service} exited:\n{self.output[-3000:]}"
            return matching

        return (await eventually(f"{event} {fields} from {self.service}", found, timeout_s))[0]

    def stop(self, sig: int = signal.SIGTERM, within_s: float = 5.0) -> int:
        """Send `sig` and return the exit code; fails (and kills the process) if it takes longer
        than `within_s`."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.service} still running {within_s}s after {signal.Signals(sig).name}:\n"
                f"{self.output[-3000:]}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
