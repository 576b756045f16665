"""Pieces of `launchdeck dev` that need no running platform: the services' command lines and
environments, the banner, and the example site's git repository."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from launchdeck.cli.dev.banner import banner
from launchdeck.cli.dev.credentials import load_or_create_credentials
from launchdeck.cli.dev.services import DevPorts, service_specs
from launchdeck.cli.devstate import DevInfo
from launchdeck.cli.example import example_url, find_example_source, head_commit, sync_example_repo
from launchdeck.cli.output import PrefixedTerminal


def specs_by_name(
    tmp_path: Path, extra_env: dict[str, str] | None = None, *, console: bool = False
) -> dict[str, dict[str, str]]:
    specs = service_specs(
        base_env={
            "PATH": "/usr/bin",
            "DATABASE_URL": "postgres://outer",
            "HOME": "/root",
            **(extra_env or {}),
        },
        state=tmp_path,
        database_url="postgresql://postgres@/launchdeck?host=/sock",
        nats_url="nats://127.0.0.1:41000",
        secret_key="s3cret",
        ports=DevPorts(api=8080, edge=8000, deploy_engine=41001, nats=41000),
        console=console,
    )
    for spec in specs:
        assert spec.argv == (sys.executable, "-m", "launchdeck." + spec.name.replace("-", "_"))
    return {spec.name: dict(spec.env) for spec in specs}


def test_each_service_gets_its_own_environment(tmp_path: Path) -> None:
    """All four services share NATS and the state dir; each gets its own settings."""
    env = specs_by_name(tmp_path)
    assert list(env) == ["control-api", "build-worker", "deploy-engine", "generator"]
    for service_env in env.values():
        assert service_env["NATS_URL"] == "nats://127.0.0.1:41000"
        assert service_env["LAUNCHDECK_STATE_DIR"] == str(tmp_path)
        assert service_env["PATH"] == "/usr/bin"
    api = env["control-api"]
    assert api["DATABASE_URL"] == "postgresql://postgres@/launchdeck?host=/sock"
    assert api["LAUNCHDECK_SECRET_KEY"] == "s3cret"
    assert (api["LAUNCHDECK_API_HOST"], api["LAUNCHDECK_API_PORT"]) == ("127.0.0.1", "8080")
    assert env["build-worker"]["LAUNCHDECK_ALLOW_LOCAL_REPOS"] == "true"
    assert env["build-worker"]["LAUNCHDECK_BUILD_DIR"] == str(tmp_path / "builds")
    engine = env["deploy-engine"]
    assert engine["LAUNCHDECK_RELEASES_DIR"] == str(tmp_path / "releases")
    assert engine["LAUNCHDECK_BASE_DOMAIN"] == "localhost"
    assert api["LAUNCHDECK_BASE_DOMAIN"] == engine["LAUNCHDECK_BASE_DOMAIN"]  # domain checks
    assert engine["LAUNCHDECK_EDGE_HTTP_PORT"] == "8000"
    assert api["LAUNCHDECK_EDGE_URL"] == "http://127.0.0.1:8000"  # scheduled HTTP calls
    assert engine["LAUNCHDECK_DEPLOY_ENGINE_PORT"] == "41001"
    assert example_url(8000) == "http://example.localhost:8000/"


def test_platform_credentials_reach_only_the_control_api(tmp_path: Path) -> None:
    """DATABASE_URL and the secret key are never in a worker's environment (so never in a
    build), even when set in the environment `launchdeck dev` was started from."""
    env = specs_by_name(tmp_path)
    for name in ("build-worker", "deploy-engine", "generator"):
        assert "DATABASE_URL" not in env[name]
        assert "LAUNCHDECK_SECRET_KEY" not in env[name]


def test_a_previous_secret_key_reaches_only_the_control_api(tmp_path: Path) -> None:
    """During a key rotation the previous key (`<state>/secret.key.previous`) goes to the
    control-api alone, like the key itself, and never from the outer environment to a worker."""
    specs = service_specs(
        base_env={"PATH": "/usr/bin", "LAUNCHDECK_SECRET_KEY_PREVIOUS": "outer-previous"},
        state=tmp_path,
        database_url="postgresql://postgres@/launchdeck?host=/sock",
        nats_url="nats://127.0.0.1:41000",
        secret_key="s3cret",
        secret_key_previous="old-s3cret",
        ports=DevPorts(api=8080, edge=8000, deploy_engine=41001, nats=41000),
        console=False,
    )
    env = {spec.name: dict(spec.env) for spec in specs}
    assert env["control-api"]["LAUNCHDECK_SECRET_KEY_PREVIOUS"] == "old-s3cret"
    for name in ("build-worker", "deploy-engine", "generator"):
        assert "LAUNCHDECK_SECRET_KEY_PREVIOUS" not in env[name]
    without = specs_by_name(tmp_path, {"LAUNCHDECK_SECRET_KEY_PREVIOUS": "outer-previous"})
    assert all("LAUNCHDECK_SECRET_KEY_PREVIOUS" not in e for e in without.values())


def test_each_service_gets_its_own_nats_login_and_nobody_elses(tmp_path: Path) -> None:
    """With the embedded NATS each service gets its own user and the path of its own password
    file — never a password in its environment, never another service's or the operator's
    login, and none of the NATS credentials of the environment `launchdeck dev` started in."""
    credentials = load_or_create_credentials(tmp_path)
    specs = service_specs(
        base_env={"PATH": "/usr/bin", "NATS_USER": "outer", "NATS_PASSWORD": "outer-secret"},
        state=tmp_path,
        database_url="postgresql://postgres:pw@/launchdeck?host=/sock",
        nats_url="nats://127.0.0.1:41000",
        secret_key="s3cret",
        ports=DevPorts(api=8080, edge=8000, deploy_engine=41001, nats=41000),
        nats_logins=credentials.nats,
        console=False,
    )
    passwords = {login.password for login in credentials.nats.values()}
    for spec in specs:
        env = dict(spec.env)
        own = credentials.nats[spec.name]
        assert env["NATS_USER"] == spec.name == own.user
        assert env["NATS_PASSWORD_FILE"] == str(own.password_file)
        assert "NATS_PASSWORD" not in env
        values = "\n".join(env.values())
        assert "outer" not in values
        assert not any(password in values for password in passwords)
        others = [login for user, login in credentials.nats.items() if user != spec.name]
        assert not any(str(login.password_file) in values for login in others)
    # With an external NATS_URL the caller's credentials are what every service gets.
    outer = specs_by_name(tmp_path, {"NATS_USER": "outer", "NATS_PASSWORD": "outer-secret"})
    assert {env["NATS_USER"] for env in outer.values()} == {"outer"}


@pytest.mark.parametrize(
    ("set_by_caller", "console", "expected"),
    [
        (None, True, "console"),  # `make dev` in a terminal: logs for people
        (None, False, "json"),  # output to a file or a pipe (CI): one JSON object per line
        ("auto", True, "console"),  # `auto` would see the pipe to the supervisor: decided here
        ("auto", False, "json"),
        ("json", True, "json"),  # what the caller asked for wins
        ("console", False, "console"),
    ],
)
def test_services_log_for_people_on_a_terminal_and_json_otherwise(
    tmp_path: Path, set_by_caller: str | None, console: bool, expected: str
) -> None:
    """Every service gets the same LAUNCHDECK_LOG_FORMAT: console when `launchdeck dev` writes
    to a terminal, JSON when it does not, unless the caller chose one."""
    extra = {} if set_by_caller is None else {"LAUNCHDECK_LOG_FORMAT": set_by_caller}
    env = specs_by_name(tmp_path, extra, console=console)
    assert {service_env["LAUNCHDECK_LOG_FORMAT"] for service_env in env.values()} == {expected}


def banner_text(info: DevInfo, example_live: bool | None) -> str:
    term = PrefixedTerminal(io.StringIO(), io.StringIO(), colour=False)
    return "\n".join(banner(term, info, example_live))


def dev_info(tmp_path: Path, *, example: bool) -> DevInfo:
    return DevInfo(
        api_url="http://127.0.0.1:8080",
        dashboard_url="http://127.0.0.1:8080/",
        edge_url="http://localhost:8000",
        admin_token="tok-123",
        database_url="postgresql://postgres@/launchdeck?host=/sock",
        nats_url="nats://127.0.0.1:41000",
        state_dir=str(tmp_path),
        ports={"api": 8080, "edge": 8000, "deploy_engine": 41001, "nats": 41000},
        example_url=example_url(8000) if example else None,
    )


def test_banner_says_where_everything_is_and_what_to_type(tmp_path: Path) -> None:
    """The banner shows the dashboard, API, token, edge, example, NATS URL, the deploy-engine's
    port and dev.json, and suggests commands that work verbatim from the checkout
    (`./launchdeck`)."""
    text = banner_text(dev_info(tmp_path, example=True), example_live=True)
    assert "  Dashboard      http://127.0.0.1:8080/\n" in text
    for shown in (
        "Launchdeck is running",
        "http://127.0.0.1:8080",
        "tok-123",
        "http://localhost:8000",
        "http://example.localhost:8000/",
        "nats://127.0.0.1:41000",
        "http://127.0.0.1:41001/health",
        str(tmp_path / "dev.json"),
        "./launchdeck deploy example",
        "./launchdeck projects list",
    ):
        assert shown in text, f"{shown!r} not in the banner:\n{text}"
    assert "uv run" not in text  # uv may not be on PATH after `make dev` installed it
    assert "(not live)" not in text

    failed = banner_text(dev_info(tmp_path, example=True), example_live=False)
    assert "http://example.localhost:8000/  (not live)" in failed
    without = banner_text(dev_info(tmp_path, example=False), example_live=None)
    assert "example.localhost" not in without
    assert "./launchdeck projects create NAME REPO_URL" in without


def test_banner_names_the_nats_login_but_not_its_password(tmp_path: Path) -> None:
    """The operator's NATS user is shown, its password only said to be in dev.json: the banner
    may end up in a CI log."""
    info = replace(dev_info(tmp_path, example=True), nats_user="operator", nats_password="pw-1")
    text = banner_text(info, example_live=True)
    assert "user operator, password: nats_password in dev.json" in text
    assert "pw-1" not in text


def git_files(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    return sorted(out.split())


def test_example_repo_is_committed_when_new_or_changed(tmp_path: Path) -> None:
    """The example becomes a git repo on `main`; a second sync commits nothing; a change to the
    source (edited or deleted file) makes exactly one new commit mirroring it."""
    source = tmp_path / "site"
    (source / "about").mkdir(parents=True)
    (source / "index.html").write_text("<h1>v1</h1>")
    (source / "about" / "index.html").write_text("about")
    repo = tmp_path / "state" / "example-repo"

    assert sync_example_repo(source, repo) is True
    first = head_commit(repo)
    assert git_files(repo) == ["about/index.html", "index.html"]
    branch = subprocess.run(
        ["git", "branch", "--show-current"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert branch == "main"

    assert sync_example_repo(source, repo) is False
    assert head_commit(repo) == first

    (source / "index.html").write_text("<h1>v2</h1>")
    (source / "about" / "index.html").unlink()
    assert sync_example_repo(source, repo) is True
    assert head_commit(repo) != first
    assert git_files(repo) == ["index.html"]
    assert (repo / "index.html").read_text() == "<h1>v2</h1>"
    assert not (repo / "about").exists()


def test_bundled_example_is_a_static_site() -> None:
    """examples/static-site has an index, a stylesheet and an about page saying Launchdeck."""
    source = find_example_source()
    assert source is not None
    index = (source / "index.html").read_text()
    assert "Deployed by Launchdeck" in index
    assert 'href="/styles.css"' in index
    assert (source / "styles.css").is_file()
    assert "Launchdeck" in (source / "about" / "index.html").read_text()
