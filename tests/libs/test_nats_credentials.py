"""`NATS_URL` as a list of servers with credentials, on servers that require them: user and
password or a token in the URL, or given apart (`NATS_USER`/`NATS_PASSWORD`, `NATS_TOKEN`), never
logged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from launchdeck.contracts import subjects as s
from launchdeck.devservers import NatsServer, free_port, start_nats
from launchdeck.libs.jetstream import connect, disconnect, split_credentials, wait_connected
from launchdeck.libs.service import open_service
from launchdeck.libs.settings import NatsOptions, SettingsError
from tests.nats_cluster import MakeNatsCluster
from tests.polling import eventually

USER = "launchdeck"
PASSWORD = "hunter2@x/y"  # `@` and `/` must be percent-encoded in a URL
PASSWORD_IN_URL = "hunter2%40x%2Fy"
TOKEN = "s3cret-token"
USER_AUTH = f'authorization {{ user: {USER}, password: "{PASSWORD}" }}'


@dataclass(frozen=True)
class Settings:
    nats_url: str


@pytest.fixture
def password_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server (JetStream) that lets in only user `USER` with `PASSWORD`."""
    server = start_nats(tmp_path / "nats", log_file=tmp_path / "nats.log", config=USER_AUTH)
    try:
        yield server
    finally:
        server.stop()


def with_credentials(url: str, credentials: str) -> str:
    return url.replace("nats://", f"nats://{credentials}@")


async def test_a_service_connects_through_a_dead_and_a_live_server_with_credentials(
    password_nats: NatsServer,
) -> None:
    """`NATS_URL` = a dead server and the live one, both with user and password: the service
    connects, provisions, and no log line holds the password."""
    dead = f"nats://127.0.0.1:{free_port()}"
    url = ",".join(
        with_credentials(server, f"{USER}:{PASSWORD_IN_URL}")
        for server in (dead, password_nats.url)
    )
    with capture_logs() as logs:
        async with open_service("launchdeck-test", Settings(url)) as service:
            assert service.nc.is_connected
            assert (await service.js.stream_info(s.STREAM_BUILDS)).config.name == s.STREAM_BUILDS
    assert any(e["event"] == "jetstream_provisioned" for e in logs)
    assert PASSWORD not in repr(logs)
    assert PASSWORD_IN_URL not in repr(logs)


async def test_credentials_given_apart_from_the_url(password_nats: NatsServer) -> None:
    """`NATS_USER` and `NATS_PASSWORD` (as `NatsOptions`) with a URL that has none."""
    options = NatsOptions(user=USER, password=PASSWORD)
    async with open_service("launchdeck-test", Settings(password_nats.url), None, options) as svc:
        assert svc.nc.is_connected
    assert PASSWORD not in repr(options)


async def test_a_token_in_the_url(tmp_path: Path) -> None:
    """`nats://<token>@host:port` authenticates with the token."""
    server = start_nats(
        tmp_path / "nats",
        log_file=tmp_path / "nats.log",
        config=f'authorization {{ token: "{TOKEN}" }}',
    )
    try:
        nc = await connect(with_credentials(server.url, TOKEN), name="test-token")
        try:
            await nc.flush(timeout=5)
            assert nc.is_connected
        finally:
            await disconnect(nc)
    finally:
        server.stop()


async def test_url_credentials_reach_the_nodes_learnt_from_the_cluster(
    make_nats_cluster: MakeNatsCluster,
) -> None:
    """A `NATS_URL` naming one node of a cluster with credentials: when that node dies, the
    client gets into another node it learnt from the cluster — with the same credentials — and
    says where it reconnected without them."""
    cluster = make_nats_cluster(config=USER_AUTH)
    first = cluster.nodes[0]
    with capture_logs() as logs:
        nc = await connect(with_credentials(first.url, f"{USER}:{PASSWORD_IN_URL}"), name="test")
        try:
            assert nc.connected_url is not None
            assert nc.connected_url.port == first.port
            first.kill()
            await eventually(
                "a reconnect to another node",
                lambda: (
                    nc.is_connected
                    and nc.connected_url is not None
                    and nc.connected_url.port != first.port
                ),
            )
            await wait_connected(nc)
            await nc.flush(timeout=5)
        finally:
            await nc.close()
    reconnected = [e for e in logs if e["event"] == "nats_reconnected"]
    assert reconnected
    assert reconnected[0]["server"].startswith("127.0.0.1:")
    assert PASSWORD not in repr(logs)
    assert PASSWORD_IN_URL not in repr(logs)


@pytest.mark.parametrize(
    ("servers", "plain", "options"),
    [
        (["nats://h:4222"], ["nats://h:4222"], {}),
        (["nats://u:p@h1:4222", "nats://u:p@h2:4222"], ["nats://h1:4222", "nats://h2:4222"],
         {"user": "u", "password": "p"}),
        (["nats://tok@h:4222"], ["nats://h:4222"], {"token": "tok"}),
        (["nats://u:p%40ss@h:4222"], ["nats://h:4222"], {"user": "u", "password": "p@ss"}),
        # Mixed with a server without credentials: the same credentials are used for it too.
        (["nats://u:p@h1:4222", "nats://h2:4222"], ["nats://h1:4222", "nats://h2:4222"],
         {"user": "u", "password": "p"}),
        # Different credentials per server: each keeps its own (nats-py's behaviour).
        (["nats://a:p@h1:4222", "nats://b:q@h2:4222"],
         ["nats://a:p@h1:4222", "nats://b:q@h2:4222"], {}),
        (["u:p@h:4222"], ["nats://h:4222"], {"user": "u", "password": "p"}),
    ],
)  # fmt: skip
def test_credentials_are_taken_out_of_the_urls(
    servers: list[str], plain: list[str], options: dict[str, str]
) -> None:
    assert split_credentials(servers) == (plain, options)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NATS_USER": "u"}, "NATS_USER and NATS_PASSWORD go together"),
        ({"NATS_PASSWORD": "p"}, "NATS_USER and NATS_PASSWORD go together"),
        ({"NATS_USER": "u", "NATS_PASSWORD": "p", "NATS_TOKEN": "t"}, "not both"),
    ],
)
def test_incomplete_or_conflicting_credentials_are_settings_errors(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NATS_USER", "NATS_PASSWORD", "NATS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        NatsOptions.from_env()


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_USER", USER)
    monkeypatch.setenv("NATS_PASSWORD", PASSWORD)
    monkeypatch.setenv("LAUNCHDECK_NATS_REPLICAS", "3")
    monkeypatch.delenv("NATS_TOKEN", raising=False)
    options = NatsOptions.from_env()
    assert options.credentials() == {"user": USER, "password": PASSWORD}
    assert options.replicas == 3
    assert PASSWORD not in repr(options)


def test_the_password_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`NATS_PASSWORD_FILE` (what `launchdeck dev` gives each service): the file's content,
    without its trailing newline, so the password never sits in the environment."""
    secret = tmp_path / "nats.password"
    secret.write_text(PASSWORD + "\n")
    for name in ("NATS_PASSWORD", "NATS_TOKEN", "NATS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_USER", USER)
    monkeypatch.setenv("NATS_PASSWORD_FILE", str(secret))
    assert NatsOptions.from_env().credentials() == {"user": USER, "password": PASSWORD}


def test_a_token_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "nats.token"
    secret.write_text(TOKEN)
    for name in ("NATS_USER", "NATS_PASSWORD", "NATS_PASSWORD_FILE", "NATS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NATS_TOKEN_FILE", str(secret))
    assert NatsOptions.from_env().credentials() == {"token": TOKEN}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "NATS_PASSWORD_FILE=.* cannot be read: No such file or directory"),
        ("", "NATS_PASSWORD_FILE=.* is empty"),
    ],
)
def test_a_password_file_that_cannot_be_used_is_a_settings_error(
    content: str | None, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "nats.password"
    if content is not None:
        secret.write_text(content)
    monkeypatch.delenv("NATS_PASSWORD", raising=False)
    monkeypatch.setenv("NATS_USER", USER)
    monkeypatch.setenv("NATS_PASSWORD_FILE", str(secret))
    with pytest.raises(SettingsError, match=message):
        NatsOptions.from_env()


def test_a_password_and_a_password_file_together_are_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which one would win is not obvious: neither does, and the message shows no secret."""
    secret = tmp_path / "nats.password"
    secret.write_text("from-the-file")
    monkeypatch.setenv("NATS_USER", USER)
    monkeypatch.setenv("NATS_PASSWORD", PASSWORD)
    monkeypatch.setenv("NATS_PASSWORD_FILE", str(secret))
    with pytest.raises(SettingsError, match="NATS_PASSWORD or NATS_PASSWORD_FILE") as raised:
        NatsOptions.from_env()
    assert PASSWORD not in str(raised.value)
    assert "from-the-file" not in str(raised.value)
