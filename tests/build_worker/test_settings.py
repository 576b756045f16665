"""build-worker settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from launchdeck.build_worker.settings import Settings
from launchdeck.libs.settings import SettingsError

VARIABLES = (
    "NATS_URL",
    "LAUNCHDECK_STATE_DIR",
    "LAUNCHDECK_BUILD_DIR",
    "LAUNCHDECK_ALLOW_LOCAL_REPOS",
    "LAUNCHDECK_BUILD_CONCURRENCY",
    "LAUNCHDECK_BUILD_TIMEOUT_S",
    "LAUNCHDECK_LOG_MAX_BYTES",
    "LAUNCHDECK_GIT_TOKEN",
    "LAUNCHDECK_GIT_TOKEN_HOSTS",
    "LAUNCHDECK_BUILD_CACHE",
    "LAUNCHDECK_BUILD_CACHE_DIR",
    "LAUNCHDECK_BUILD_CACHE_KEEP",
    "LAUNCHDECK_BUILD_ENV_PASSTHROUGH",
    "LAUNCHDECK_LOG_BUFFER_LINES",
    "LAUNCHDECK_BUILD_OUTAGE_GRACE_S",
    "LAUNCHDECK_BUILD_STALL_TIMEOUT_S",
    "LAUNCHDECK_BUILD_MAX_TIMEOUT_S",
    "LAUNCHDECK_BUILD_CACHE_MAX_BYTES",
    "LAUNCHDECK_BUILD_CACHE_MAX_AGE_DAYS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Builds go under <state dir>/builds; local repos are off; 1 build, 30 min, 10 MiB of log."""
    monkeypatch.setenv("LAUNCHDECK_STATE_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.build_dir == tmp_path / "builds"
    assert settings.allow_local_repos is False
    assert (settings.concurrency, settings.timeout_s) == (1, 1800)
    assert settings.log_max_bytes == 10 * 1024 * 1024
    assert settings.git_token is None
    assert settings.git_token_hosts == ("github.com",)
    assert (settings.cache_dir, settings.cache_keep) == (tmp_path / "build-cache", 2)
    assert "NODE_EXTRA_CA_CERTS" in settings.build_env_passthrough
    assert "SSL_CERT_FILE" in settings.build_env_passthrough


def test_dependency_cache_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's directory and size are set by variables; LAUNCHDECK_BUILD_CACHE=false is off."""
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE_DIR", "/var/cache/ld")
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE_KEEP", "5")
    settings = Settings.from_env()
    assert (settings.cache_dir, settings.cache_keep) == (Path("/var/cache/ld"), 5)
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE", "false")
    assert Settings.from_env().cache_dir is None
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE", "true")
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE_KEEP", "0")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BUILD_CACHE_KEEP"):
        Settings.from_env()


def test_values_and_the_token_stays_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable is read; the git token never shows in the settings' repr."""
    monkeypatch.setenv("LAUNCHDECK_BUILD_DIR", "/var/lib/ld/builds")
    monkeypatch.setenv("LAUNCHDECK_ALLOW_LOCAL_REPOS", "yes")
    monkeypatch.setenv("LAUNCHDECK_BUILD_CONCURRENCY", "4")
    monkeypatch.setenv("LAUNCHDECK_GIT_TOKEN", "ghp_supersecret")
    monkeypatch.setenv("LAUNCHDECK_GIT_TOKEN_HOSTS", "GitHub.com, git.example.org")
    monkeypatch.setenv("LAUNCHDECK_BUILD_ENV_PASSTHROUGH", "HTTPS_PROXY, NO_PROXY,")
    settings = Settings.from_env()
    assert settings.build_env_passthrough == ("HTTPS_PROXY", "NO_PROXY")
    assert settings.build_dir == Path("/var/lib/ld/builds")
    assert settings.allow_local_repos is True
    assert settings.concurrency == 4
    assert settings.git_token == "ghp_supersecret"
    assert settings.git_token_hosts == ("github.com", "git.example.org")
    assert "ghp_supersecret" not in repr(settings)


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed or out-of-range value fails at start-up naming its variable."""
    monkeypatch.setenv("LAUNCHDECK_BUILD_CONCURRENCY", "0")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BUILD_CONCURRENCY"):
        Settings.from_env()
    monkeypatch.setenv("LAUNCHDECK_BUILD_CONCURRENCY", "1")
    monkeypatch.setenv("LAUNCHDECK_ALLOW_LOCAL_REPOS", "maybe")
    with pytest.raises(SettingsError, match="LAUNCHDECK_ALLOW_LOCAL_REPOS"):
        Settings.from_env()


def test_outage_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unsent-line buffer, the grace past the time limit and the watchdog: defaults, values,
    0 turning the watchdog off, and out-of-range values named."""
    settings = Settings.from_env()
    assert (settings.log_buffer_lines, settings.outage_grace_s) == (10_000, 120.0)
    assert settings.stall_timeout_s == 600.0
    monkeypatch.setenv("LAUNCHDECK_LOG_BUFFER_LINES", "500")
    monkeypatch.setenv("LAUNCHDECK_BUILD_OUTAGE_GRACE_S", "30")
    monkeypatch.setenv("LAUNCHDECK_BUILD_STALL_TIMEOUT_S", "0")
    settings = Settings.from_env()
    assert (settings.log_buffer_lines, settings.outage_grace_s) == (500, 30.0)
    assert settings.stall_timeout_s is None
    for name, bad in (
        ("LAUNCHDECK_LOG_BUFFER_LINES", "0"),
        ("LAUNCHDECK_BUILD_OUTAGE_GRACE_S", "0.5"),
        ("LAUNCHDECK_BUILD_STALL_TIMEOUT_S", "-1"),
    ):
        monkeypatch.setenv(name, bad)
        with pytest.raises(SettingsError, match=name):
            Settings.from_env()
        monkeypatch.delenv(name)


def test_operator_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time-limit ceiling and the cache's size and age: defaults (1 h, 10 GiB, 30 days),
    values, and a default time limit above the ceiling refused at start."""
    settings = Settings.from_env()
    assert settings.max_timeout_s == 3600
    assert (settings.cache_max_bytes, settings.cache_max_age_s) == (10 * 1024**3, 30 * 86400.0)
    monkeypatch.setenv("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", "7200")
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE_MAX_BYTES", "1000000")
    monkeypatch.setenv("LAUNCHDECK_BUILD_CACHE_MAX_AGE_DAYS", "0.5")
    settings = Settings.from_env()
    assert (settings.max_timeout_s, settings.cache_max_bytes) == (7200, 1_000_000)
    assert settings.cache_max_age_s == 43200.0
    monkeypatch.setenv("LAUNCHDECK_BUILD_MAX_TIMEOUT_S", "600")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BUILD_TIMEOUT_S must not exceed"):
        Settings.from_env()
    monkeypatch.setenv("LAUNCHDECK_BUILD_TIMEOUT_S", "600")
    assert Settings.from_env().max_timeout_s == 600
    for name in ("LAUNCHDECK_BUILD_CACHE_MAX_BYTES", "LAUNCHDECK_BUILD_CACHE_MAX_AGE_DAYS"):
        monkeypatch.setenv(name, "0")
        with pytest.raises(SettingsError, match=name):
            Settings.from_env()
        monkeypatch.delenv(name)


def test_sandbox_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`LAUNCHDECK_BUILD_SANDBOX` is auto by default, one of three words (any case), anything
    else stops the worker; the extra read-only paths must be absolute; the state directory is
    known (so a sandboxed build never sees it)."""
    monkeypatch.delenv("LAUNCHDECK_BUILD_SANDBOX", raising=False)
    monkeypatch.delenv("LAUNCHDECK_BUILD_SANDBOX_RO_PATHS", raising=False)
    monkeypatch.setenv("LAUNCHDECK_STATE_DIR", str(tmp_path / "state"))
    settings = Settings.from_env()
    assert (settings.sandbox, settings.sandbox_ro_paths) == ("auto", ())
    assert settings.state_dir == tmp_path / "state"
    monkeypatch.setenv("LAUNCHDECK_BUILD_SANDBOX", "NONE")
    monkeypatch.setenv("LAUNCHDECK_BUILD_SANDBOX_RO_PATHS", "/opt/sdk,/srv/tools")
    settings = Settings.from_env()
    assert settings.sandbox == "none"
    assert settings.sandbox_ro_paths == (Path("/opt/sdk"), Path("/srv/tools"))
    monkeypatch.setenv("LAUNCHDECK_BUILD_SANDBOX", "docker")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BUILD_SANDBOX must be one of auto, bwrap"):
        Settings.from_env()
    monkeypatch.setenv("LAUNCHDECK_BUILD_SANDBOX", "bwrap")
    monkeypatch.setenv("LAUNCHDECK_BUILD_SANDBOX_RO_PATHS", "opt/sdk")
    with pytest.raises(SettingsError, match="LAUNCHDECK_BUILD_SANDBOX_RO_PATHS must list absolute"):
        Settings.from_env()
