"""The engine's own Caddy: started detached, reused through its socket, stopped on request."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from launchdeck.deploy_engine.caddy import (
    CaddyError,
    CaddyPaths,
    ensure_caddy,
    listen_address,
    read_pid,
    stop_caddy,
)
from launchdeck.deploy_engine.caddy_admin import CaddyAdmin, parse_admin_address
from launchdeck.devservers import free_port


async def test_caddy_is_started_detached_reused_and_stopped(tmp_path: Path, caddy_bin: str) -> None:
    """ensure_caddy starts one Caddy in its own session, reuses it, stop_caddy ends it."""
    listen = listen_address("127.0.0.1", free_port())
    paths = CaddyPaths.of(tmp_path)
    try:
        address = await ensure_caddy(tmp_path, listen, binary=caddy_bin)
        assert address == f"unix/{paths.socket}"
        pid = read_pid(paths)
        assert pid is not None
        assert os.getsid(pid) == pid  # its own session: the engine's signals do not reach it
        async with CaddyAdmin(address) as admin:
            config = await admin.request("GET", "/config/")
        assert config["admin"]["listen"] == address  # admin on the unix socket only
        assert config["apps"]["http"]["servers"]["launchdeck"]["listen"] == [listen]

        assert await ensure_caddy(tmp_path, listen, binary=caddy_bin) == address
        assert read_pid(paths) == pid  # reused, not a second one
    finally:
        stopped = stop_caddy(tmp_path)
    assert stopped
    assert not paths.socket.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert stop_caddy(tmp_path) is False


async def test_deep_state_dir_gets_a_private_short_socket(tmp_path: Path, caddy_bin: str) -> None:
    """A state dir too deep for a unix socket path still works: the socket moves to a private
    per-user directory under /tmp, stable for that state dir."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    paths = CaddyPaths.of(deep)
    assert len(str(paths.dir / "admin.sock")) > 100
    assert len(str(paths.socket)) <= 100
    assert paths.socket == CaddyPaths.of(deep).socket
    try:
        address = await ensure_caddy(
            deep, listen_address("127.0.0.1", free_port()), binary=caddy_bin
        )
        assert address == f"unix/{paths.socket}"
        assert paths.socket.parent.stat().st_mode & 0o077 == 0  # only this user
        async with CaddyAdmin(address) as admin:
            assert await admin.ping()
    finally:
        assert stop_caddy(deep)
    assert not paths.socket.exists()


async def test_stale_pidfile_and_socket_are_replaced(tmp_path: Path, caddy_bin: str) -> None:
    """Leftovers of a Caddy that died (pidfile of another process, dead socket) are cleaned."""
    paths = CaddyPaths.of(tmp_path)
    paths.dir.mkdir(parents=True)
    paths.pidfile.write_text(f"{os.getpid()}\n")  # alive, but not a caddy: must not be killed
    paths.socket.write_text("")
    try:
        await ensure_caddy(tmp_path, listen_address("127.0.0.1", free_port()), binary=caddy_bin)
        assert read_pid(paths) != os.getpid()
    finally:
        assert stop_caddy(tmp_path)


async def test_caddy_start_failure_is_reported(tmp_path: Path, caddy_bin: str) -> None:
    """A Caddy that cannot start (edge port taken) fails with Caddy's own message."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CaddyError, match="address already in use"):
            await ensure_caddy(
                tmp_path, listen_address("127.0.0.1", port), binary=caddy_bin, timeout_s=10
            )
    assert not CaddyPaths.of(tmp_path).pidfile.exists()


def test_admin_addresses() -> None:
    """Caddy's address notation: unix sockets and TCP host:port."""
    assert parse_admin_address("unix//run/caddy.sock") == ("/run/caddy.sock", "http://127.0.0.1")
    assert parse_admin_address("127.0.0.1:2999") == (None, "http://127.0.0.1:2999")
    assert parse_admin_address("http://localhost:2019/") == (None, "http://localhost:2019")
    assert listen_address("::1", 80) == "[::1]:80"


@pytest.fixture
def external_caddy(tmp_path: Path, caddy_bin: str) -> Iterator[str]:
    """A Caddy someone else runs, admin API on loopback TCP, empty config; its admin address."""
    admin = f"127.0.0.1:{free_port()}"
    config = tmp_path / "external.json"
    config.write_text(json.dumps({"admin": {"listen": admin}}))
    proc = subprocess.Popen(
        [caddy_bin, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
    )
    try:
        yield admin
    finally:
        proc.terminate()
        proc.wait(10)


async def test_existing_caddy_on_tcp_admin_gets_the_launchdeck_server(external_caddy: str) -> None:
    """A configured Caddy gets the server added to its config, left alone when intact, and
    rewritten when it lost its route skeleton or listens elsewhere."""
    async with CaddyAdmin(external_caddy) as admin:
        await admin.wait_ready(10)
        listen = listen_address("127.0.0.1", free_port())
        assert await admin.ensure_server(listen) is True
        assert await admin.server_intact(listen)
        assert await admin.ensure_server(listen) is False
        await admin.request("DELETE", "/id/launchdeck-fallback")
        assert not await admin.server_intact(listen)
        assert await admin.ensure_server(listen) is True
        assert await admin.site_route_ids() == []
        assert not await admin.server_intact(listen_address("127.0.0.1", free_port()))
