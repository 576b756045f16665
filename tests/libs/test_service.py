"""The service skeleton (`libs.service`, `libs.runner`) as every service runs it: waiting for NATS
at start, stopping at any moment, refusing a mistyped setting."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from launchdeck.devservers import free_port
from launchdeck.libs.runner import Lifecycle, run_process, run_until_stopped
from launchdeck.libs.service import wait_until_up
from tests.polling import eventually
from tests.service_process import SERVICE_MODULES, ServiceProcess, service_env

SERVICES = sorted(SERVICE_MODULES)


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Service processes a test starts; any still running afterwards is killed."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.kill()


@pytest.mark.parametrize("service", SERVICES)
async def test_waiting_for_nats_is_logged_once_and_sigterm_stops_it(
    service: str, processes: list[ServiceProcess], tmp_path: Path
) -> None:
    """With nothing listening at NATS_URL the service says once that it waits for NATS at that
    URL (credentials left out), keeps trying, and exits 0 at once on SIGTERM."""
    port = free_port()
    env = service_env(
        service,
        tmp_path / "state",
        NATS_URL=f"nats://ld:hunter2@127.0.0.1:{port}",
        LAUNCHDECK_LOG_LEVEL="debug",  # to see each try
    )
    process = ServiceProcess(service, env, tmp_path / "service.log")
    processes.append(process)
    process.start()
    began = await process.wait_for("outage_began", what="NATS")
    assert began["url"] == f"nats://127.0.0.1:{port}"
    assert began["level"] == "warning"
    await eventually(
        "three failed tries",
        lambda: [e["event"] for e in process.events()].count("nats_connection_error") >= 3,
    )

    assert await asyncio.to_thread(process.stop, signal.SIGTERM) == 0, process.output
    events = [e["event"] for e in process.events()]
    assert events.count("outage_began") == 1
    assert events[-1] == "service_stopped"
    assert "hunter2" not in process.output
    assert "Traceback" not in process.output


async def test_ctrl_c_stops_a_service_still_waiting_for_nats(
    processes: list[ServiceProcess], tmp_path: Path
) -> None:
    """SIGINT (Ctrl-C) during start-up stops the service as cleanly as SIGTERM."""
    env = service_env(
        "build-worker", tmp_path / "state", NATS_URL=f"nats://127.0.0.1:{free_port()}"
    )
    process = ServiceProcess("build-worker", env, tmp_path / "service.log")
    processes.append(process)
    process.start()
    await process.wait_for("outage_began", what="NATS")
    assert await asyncio.to_thread(process.stop, signal.SIGINT) == 0, process.output
    assert "KeyboardInterrupt" not in process.output


def run_to_exit(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", SERVICE_MODULES[service]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        pytest.param(
            "LAUNCHDECK_LOG_LEVEL", "verbose", "debug, info, warning, error, critical", id="level"
        ),
        pytest.param("LAUNCHDECK_LOG_FORMAT", "pretty", "auto, console, json", id="format"),
    ],
)
async def test_a_mistyped_log_setting_stops_the_service_at_start(
    service: str, variable: str, value: str, allowed: str, tmp_path: Path
) -> None:
    """A log level or format outside the allowed words stops the service before it connects
    anywhere: exit code 1, one line on stderr naming the variable and the allowed values."""
    env = service_env(service, tmp_path, NATS_URL="nats://127.0.0.1:1", **{variable: value})
    result = await asyncio.to_thread(run_to_exit, service, env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{service}: environment variable {variable} must be one of {allowed}, got {value!r}"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("service", ["build-worker", "deploy-engine"])
async def test_a_malformed_service_setting_stops_the_service_without_a_traceback(
    service: str, tmp_path: Path
) -> None:
    """Service settings are read before start-up too: a bad number names its variable."""
    variable = {
        "build-worker": "LAUNCHDECK_BUILD_CONCURRENCY",
        "deploy-engine": "LAUNCHDECK_DEPLOY_CONCURRENCY",
    }[service]
    env = service_env(service, tmp_path, NATS_URL="nats://127.0.0.1:1", **{variable: "many"})
    result = await asyncio.to_thread(run_to_exit, service, env)
    assert result.returncode == 1
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


async def test_wait_until_up_retries_what_is_not_up_yet_and_logs_the_wait_once() -> None:
    """Errors of `retry_on` are retried (one outage_began, one outage_ended); the result of
    the first try that works is returned."""
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(len(tries))
        if len(tries) < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    with capture_logs() as logs:
        assert await wait_until_up("thing", attempt, retry_on=(OSError,), url="x://h") == "up"
    assert len(tries) == 3
    assert [(e["event"], e.get("url")) for e in logs] == [
        ("outage_began", "x://h"),
        ("outage_ended", "x://h"),
    ]


async def test_wait_until_up_raises_other_errors_at_once() -> None:
    """An error that does not mean 'not up yet' (bad credentials, say) is not waited out."""
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(1)
        raise ValueError("bad password")

    with pytest.raises(ValueError, match="bad password"):
        await wait_until_up("thing", attempt, retry_on=(OSError,))
    assert tries == [1]


async def forever() -> None:
    await asyncio.Event().wait()


async def test_run_until_stopped_reports_a_task_that_dies() -> None:
    """A task ending on its own ends the wait with its error; the other tasks are cancelled."""
    stop = asyncio.Event()
    survivor = asyncio.create_task(forever(), name="survivor")

    async def fail() -> None:
        raise RuntimeError("lost the database")

    with pytest.raises(RuntimeError, match="lost the database"):
        await run_until_stopped(stop, survivor, asyncio.create_task(fail(), name="failing"))
    assert survivor.cancelled()


async def test_run_until_stopped_can_leave_the_tasks_to_their_owner() -> None:
    """With cancel_tasks=False a stop returns and the tasks keep running (their owner stops
    them in its own order)."""
    stop = asyncio.Event()
    task = asyncio.create_task(forever(), name="owned")
    stop.set()
    await run_until_stopped(stop, task, cancel_tasks=False)
    assert not task.done()
    task.cancel()


def test_a_failing_service_exits_1_with_the_error_logged() -> None:
    """An exception out of the body is logged with its traceback (not printed raw) and the
    process exits 1, so its supervisor restarts it."""

    async def main(lifecycle: Lifecycle) -> None:
        raise RuntimeError("lost the database")

    with capture_logs() as logs, pytest.raises(SystemExit) as exited:
        run_process(main)
    assert exited.value.code == 1
    assert [e["event"] for e in logs] == ["service_starting", "service_failed"]
    assert logs[1]["exc_info"] is True
