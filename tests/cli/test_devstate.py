"""The dev state directory: dev.json, the secret key, the lock and port choices."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from launchdeck.cli.dev.credentials import load_or_create_credentials
from launchdeck.cli.devstate import (
    RESERVED_PORTS,
    DevInfo,
    StateDirBusy,
    admin_token,
    choose_port,
    dev_lock,
    load_or_create_secret,
    mark_not_ready,
    read_dev_json,
    read_secret,
    recorded_ports,
    write_dev_json,
)
from launchdeck.devservers import (
    forget_dead_postgres_users,
    free_port,
    stop_leftover,
)
from launchdeck.libs import tokens
from launchdeck.libs.processes import process_alive


def sample_info(tmp_path: Path) -> DevInfo:
    return DevInfo(
        api_url="http://127.0.0.1:8080",
        edge_url="http://localhost:8000",
        admin_token="tok",
        database_url="postgresql://postgres@/launchdeck?host=/tmp/x",
        nats_url="nats://127.0.0.1:41234",
        state_dir=str(tmp_path),
        ports={"api": 8080, "edge": 8000, "deploy_engine": 41000, "nats": 41234},
        pid=123,
    )


def test_dev_json_is_written_privately_and_atomically(tmp_path: Path) -> None:
    """dev.json holds every documented key, is mode 0600 and no temporary file is left."""
    path = tmp_path / "dev.json"
    write_dev_json(path, sample_info(tmp_path))
    data = json.loads(path.read_text())
    for key in ("api_url", "edge_url", "admin_token", "database_url", "nats_url"):
        assert data[key]
    assert data["ports"]["nats"] == 41234
    assert "example_url" not in data  # unset values are left out, not null
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["dev.json"]


def test_dev_json_rewrite_replaces_the_content(tmp_path: Path) -> None:
    """A second write replaces the file; the reader returns what was written last."""
    path = tmp_path / "dev.json"
    write_dev_json(path, sample_info(tmp_path))
    updated = DevInfo(**{**sample_info(tmp_path).__dict__, "example_url": "http://e/"})
    write_dev_json(path, updated)
    assert read_dev_json(path)["example_url"] == "http://e/"
    assert recorded_ports(read_dev_json(path)) == sample_info(tmp_path).ports


def test_dev_json_says_not_ready_until_told_otherwise(tmp_path: Path) -> None:
    """`ready` is false unless set; a previous run's file that says ready (that run was killed
    without its clean-up) is rewritten not ready, everything else kept; others are untouched."""
    path = tmp_path / "dev.json"
    write_dev_json(path, sample_info(tmp_path))
    assert read_dev_json(path)["ready"] is False

    write_dev_json(path, replace(sample_info(tmp_path), ready=True))
    left_behind = read_dev_json(path)
    assert left_behind["ready"] is True
    mark_not_ready(path, left_behind)
    assert read_dev_json(path) == {**left_behind, "ready": False}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    path.write_text('{"api_url": "http://x", "ready": false}')
    mark_not_ready(path, read_dev_json(path))
    assert path.read_text() == '{"api_url": "http://x", "ready": false}'
    mark_not_ready(tmp_path / "missing.json", {})
    assert not (tmp_path / "missing.json").exists()


def test_missing_or_corrupt_dev_json_reads_as_empty(tmp_path: Path) -> None:
    """A fresh start (no file, half a file, not an object) reads as no recorded state."""
    path = tmp_path / "dev.json"
    assert read_dev_json(path) == {}
    path.write_text('{"api_url": ')
    assert read_dev_json(path) == {}
    path.write_text("[1, 2]")
    assert read_dev_json(path) == {}
    assert recorded_ports({"ports": {"api": "x", "edge": 8000}}) == {"edge": 8000}


def test_secret_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    """The secret is generated on first use, kept private, and reused on the next run."""
    path = tmp_path / "secret.key"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_a_previous_secret_key_is_read_only_when_there_is_one(tmp_path: Path) -> None:
    """`secret.key.previous` (an operator rotating the key) is read and made 0600; absent or
    empty, there is none, and nothing is created."""
    path = tmp_path / "secret.key.previous"
    assert read_secret(path) is None
    assert not path.exists()
    path.write_text("old-key\n")
    path.chmod(0o644)
    assert read_secret(path) == "old-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("\n")
    assert read_secret(path) is None


async def test_admin_token_is_stable_while_it_verifies_and_is_live(
    tmp_path: Path, database_url: str
) -> None:
    """The recorded admin token is reused while its row is live; a new one is minted and
    recorded (in api_tokens) when the recorded one is of another secret or was revoked."""
    secret = load_or_create_secret(tmp_path / "secret.key")
    conn = await asyncpg.connect(database_url)
    try:
        token = await admin_token(conn, secret, None)
        claims = tokens.verify(secret, token)
        assert claims.subject == "admin"
        assert claims.scopes == ("admin",)
        assert await tokens.is_registered_and_live(conn, claims.jti)
        assert await admin_token(conn, secret, token) == token
        foreign, _ = tokens.mint("another-secret-" + "x" * 32, subject="admin", scopes=["admin"])
        replacement = await admin_token(conn, secret, foreign)
        assert replacement != foreign
        tokens.verify(secret, replacement)
        await conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1", uuid.UUID(claims.jti)
        )
        renewed = await admin_token(conn, secret, token)
        assert renewed != token
        assert await tokens.is_registered_and_live(conn, tokens.verify(secret, renewed).jti)
    finally:
        await conn.close()


def test_recorded_port_is_reused_when_free() -> None:
    """The port of the previous run is chosen again when nothing listens on it."""
    port = free_port()
    taken: set[int] = set()
    assert choose_port([port, 8080], taken=taken) == port
    assert port in taken


def test_busy_or_reserved_ports_are_skipped() -> None:
    """A port in use, one already chosen, or a standard port (5432, 4222, 80, 443, 2019) is
    never chosen."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        already = free_port()
        taken = {already}
        chosen = choose_port([busy_port, already, *sorted(RESERVED_PORTS)], taken=taken)
    assert chosen not in {busy_port, already, *RESERVED_PORTS}
    assert taken == {already, chosen}


def test_state_dir_lock_refuses_a_second_dev(tmp_path: Path) -> None:
    """Two `launchdeck dev` on one state directory: the second is refused with the first's pid."""
    with dev_lock(tmp_path), pytest.raises(StateDirBusy, match=r"pid \d+"), dev_lock(tmp_path):
        pass
    with dev_lock(tmp_path):  # released after the first exits
        pass


def test_leftovers_of_a_crashed_run_are_recognised(tmp_path: Path) -> None:
    """A server left by a killed run is stopped only if its command line names our state dir;
    dead users of the embedded Postgres are forgotten so the next run can stop it."""
    marker = str(tmp_path / "nats")
    leftover = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(600)", marker])
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert stop_leftover(unrelated.pid, marker) is False
        assert stop_leftover(leftover.pid, marker) is True
        assert leftover.wait(10) == -signal.SIGTERM
        assert process_alive(unrelated.pid)
    finally:
        for proc in (leftover, unrelated):
            proc.kill()
            proc.wait()

    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / ".handle_pids.json").write_text(json.dumps([os.getpid(), unrelated.pid]))
    assert forget_dead_postgres_users(data_dir) == [unrelated.pid]
    assert json.loads((data_dir / ".handle_pids.json").read_text()) == [os.getpid()]
    assert forget_dead_postgres_users(tmp_path / "missing") == []


def test_credentials_are_private_and_kept_from_run_to_run(tmp_path: Path) -> None:
    """A NATS password per service and one for the operator, and the Postgres password: each a
    file of its own, mode 0600, in a 0700 directory; the next run finds the same ones (the
    Postgres cluster keeps the password it was given)."""
    state = tmp_path / "state"
    first = load_or_create_credentials(state)
    assert set(first.nats) == {
        "control-api",
        "build-worker",
        "deploy-engine",
        "generator",
        "operator",
    }
    directory = state / "credentials"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert len(files) == 6
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for user, login in first.nats.items():
        assert login.password_file.read_text().strip() == login.password
        assert login.password not in repr(login)
        assert login.env() == {"NATS_USER": user, "NATS_PASSWORD_FILE": str(login.password_file)}
    assert len({login.password for login in first.nats.values()}) == 5
    assert first.postgres_password not in repr(first)

    directory.chmod(0o755)  # loosened by hand: the next run makes it private again
    second = load_or_create_credentials(state)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {u: x.password for u, x in second.nats.items()} == {
        u: x.password for u, x in first.nats.items()
    }
    assert second.postgres_password == first.postgres_password
    # The embedded NATS's configuration holds them (it is written 0600 beside the store).
    assert all(login.password in second.nats_config() for login in second.nats.values())


def test_dev_json_holds_the_operators_nats_login(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    info = replace(sample_info(tmp_path), nats_user="operator", nats_password="pw-1")
    write_dev_json(path, info)
    data = read_dev_json(path)
    assert (data["nats_user"], data["nats_password"]) == ("operator", "pw-1")
    assert "pw-1" not in repr(info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
