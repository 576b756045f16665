"""Running install/build commands: argv only, minimal environment, output streamed, group killed."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from launchdeck.build_worker.errors import BuildFailed, BuildTimedOut
from launchdeck.build_worker.run import build_env, each_line, parse_command, run_command
from launchdeck.contracts.messages import LogStream
from tests.build_worker.processes import wait_gone

Lines = list[tuple[LogStream, str]]


async def run(command: str, cwd: Path, timeout_s: float = 30) -> Lines:
    lines: Lines = []
    await run_command(
        parse_command(command),
        cwd=cwd,
        env=build_env(cwd),
        sink=each_line(lambda stream, line: lines.append((stream, line))),
        timeout_s=timeout_s,
    )
    return lines


async def test_stdout_and_stderr_lines_are_streamed(tmp_path: Path) -> None:
    """Each line reaches the sink with its stream, in order per stream, without its newline."""
    script = tmp_path / "s.py"
    script.write_text(
        "import sys\nfor i in range(3): print(f'out {i}', flush=True)\n"
        "print('bad', file=sys.stderr)\nsys.stdout.write('tail without newline')\n"
    )
    lines = await run(f"{sys.executable} s.py", tmp_path)
    assert [line for stream, line in lines if stream == "stdout"] == [
        "out 0", "out 1", "out 2", "tail without newline",
    ]  # fmt: skip
    assert [line for stream, line in lines if stream == "stderr"] == ["bad"]


async def test_environment_holds_only_build_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform's own variables never reach a build; CI=true, HOME and LANG are set."""
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    lines = await run(f"{sys.executable} -c 'import os; print(sorted(os.environ))'", tmp_path)
    names = set(eval(lines[0][1]))  # a list literal printed by the child
    assert "DATABASE_URL" not in names
    assert {"PATH", "HOME", "LANG", "CI"} <= names
    lines = await run(f"{sys.executable} -c 'import os; print(os.environ[\"CI\"])'", tmp_path)
    assert lines == [("stdout", "true")]


def test_only_the_named_worker_variables_are_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's pass-through list (e.g. the CA bundle) is inherited when set; anything
    else of the worker is not; tools and then the project's variables come on top."""
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", "/etc/ssl/proxy-ca.pem")
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    env = build_env(
        tmp_path,
        {"NODE_EXTRA_CA_CERTS": "/repo/ca.pem", "APP": "1"},
        passthrough=("NODE_EXTRA_CA_CERTS", "SSL_CERT_DIR"),
        tools={"npm_config_cache": "/cache/npm"},
    )
    assert set(env) == {
        "PATH", "HOME", "LANG", "TMPDIR", "CI", "NODE_EXTRA_CA_CERTS", "npm_config_cache", "APP",
    }  # fmt: skip
    assert env["NODE_EXTRA_CA_CERTS"] == "/repo/ca.pem"  # the project's own wins
    inherited = build_env(tmp_path, passthrough=("NODE_EXTRA_CA_CERTS",))
    assert inherited["NODE_EXTRA_CA_CERTS"] == "/etc/ssl/proxy-ca.pem"


def test_the_platforms_variables_are_never_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Database URL, NATS URL and credentials, the secret key, the admin and git tokens stay
    out of a build even when the operator's pass-through list names them; a build gets a
    TMPDIR of its own; the project's variables (here one named like a platform variable: the
    project's own value) are given as they are."""
    platform = {
        "DATABASE_URL": "postgres://secret@db/x",
        "NATS_URL": "nats://u:p@h:4222",
        "NATS_PASSWORD": "p",
        "LAUNCHDECK_SECRET_KEY": "k",
        "LAUNCHDECK_TOKEN": "t",
        "LAUNCHDECK_GIT_TOKEN": "g",
    }
    for name, value in platform.items():
        monkeypatch.setenv(name, value)
    env = build_env(
        tmp_path / "home",
        {"APP_DATABASE": "app", "NATS_URL": "nats://the-apps-own:4222"},
        tmpdir=tmp_path / "tmp",
        passthrough=tuple(platform),
    )
    assert not set(env) & (set(platform) - {"NATS_URL"})
    assert env["NATS_URL"] == "nats://the-apps-own:4222"
    assert env["TMPDIR"] == str(tmp_path / "tmp")
    assert build_env(tmp_path)["TMPDIR"] == "/tmp"  # the sandbox's own /tmp


async def test_arguments_are_not_shell_interpreted(tmp_path: Path) -> None:
    """Shell syntax in a command is passed as plain arguments, never run by a shell."""
    lines = await run("echo $HOME ; rm -rf / `id`", tmp_path)
    assert lines == [("stdout", "$HOME ; rm -rf / `id`")]


async def test_failing_command_reports_its_exit_code(tmp_path: Path) -> None:
    """A non-zero exit fails the build naming the command and the code."""
    with pytest.raises(BuildFailed, match=r"`.* -c 'raise SystemExit\(3\)'` exited with code 3"):
        await run(f"{sys.executable} -c 'raise SystemExit(3)'", tmp_path)


async def test_missing_command_is_a_readable_failure(tmp_path: Path) -> None:
    """A command that does not exist fails saying so (and that there is no shell)."""
    with pytest.raises(BuildFailed, match=r"Command not found: 'no-such-tool'.*without a shell"):
        await run("no-such-tool --version", tmp_path)


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """On timeout the command and its background children are killed."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "spawn.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\ntime.sleep(600)\n"
    )
    started = time.monotonic()
    timed_out = r"^Timed out: .* while running `.*spawn\.py`"
    with pytest.raises(BuildTimedOut, match=timed_out) as raised:
        await run(f"{sys.executable} spawn.py", tmp_path, timeout_s=1.0)
    assert raised.value.reason == "timeout"
    assert time.monotonic() - started < 10
    await wait_gone(int(pid_file.read_text()))


async def test_background_children_do_not_outlive_the_command(tmp_path: Path) -> None:
    """A daemon left behind by a successful command is killed when the command exits."""
    pid_file = tmp_path / "daemon.pid"
    script = tmp_path / "daemon.py"
    script.write_text(
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " stdout=sys.stdout)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
    )
    await run(f"{sys.executable} daemon.py", tmp_path, timeout_s=20)
    await wait_gone(int(pid_file.read_text()))


# Leaves two processes that escaped its process group and hold its stdout: `setsid sleep` and a
# daemon (fork, setsid, fork again); writes their pids and exits at once.
ESCAPE = """\
import os, subprocess, sys
escapee = subprocess.Popen(["setsid", "sleep", "1000"])
open("setsid.pid", "w").write(str(escapee.pid))
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("daemon.pid", "w").write(str(os.getpid()))
        os.execvp("sleep", ["sleep", "1000"])
    os._exit(0)
while not os.path.exists("daemon.pid"):
    pass
print("spawned", flush=True)
"""


async def test_escaped_processes_holding_the_output_end_with_the_command(tmp_path: Path) -> None:
    """A command that leaves a `setsid` child and a double-forked daemon holding its stdout
    ends when it exits (not at its 600 s time limit), and both are killed (by their marker)."""
    (tmp_path / "escape.py").write_text(ESCAPE)
    started = time.monotonic()
    try:
        async with asyncio.timeout(15):
            lines = await run(f"{sys.executable} escape.py", tmp_path, timeout_s=600)
    finally:
        pids = [int((tmp_path / f).read_text()) for f in ("setsid.pid", "daemon.pid")]
    assert time.monotonic() - started < 10
    assert lines == [("stdout", "spawned")]
    for pid in pids:
        await wait_gone(pid, 3.0)


async def test_an_escapee_without_the_marker_is_found_by_the_pipe_it_holds(
    tmp_path: Path,
) -> None:
    """A process that escaped with an empty environment (no marker) but still holds the output
    pipe is found by the pipe, killed, and the command ends all the same."""
    script = (
        "import subprocess\n"
        "p = subprocess.Popen(['setsid', 'sleep', '1000'], env={})\n"
        "open('escapee.pid', 'w').write(str(p.pid))\n"
        "print('spawned', flush=True)\n"
    )
    (tmp_path / "escape.py").write_text(script)
    try:
        async with asyncio.timeout(15):
            lines = await run(f"{sys.executable} escape.py", tmp_path, timeout_s=600)
    finally:
        pid = int((tmp_path / "escapee.pid").read_text())
    assert lines == [("stdout", "spawned")]
    await wait_gone(pid, 3.0)
