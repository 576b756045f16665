"""deploy-engine settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from launchdeck.deploy_engine.settings import Settings
from launchdeck.libs.settings import SettingsError

VARIABLES = (
    "LAUNCHDECK_RELEASES_DIR",
    "LAUNCHDECK_BASE_DOMAIN",
    "LAUNCHDECK_EDGE_HTTP_PORT",
    "LAUNCHDECK_EDGE_BIND",
    "LAUNCHDECK_CADDY_ADMIN",
    "LAUNCHDECK_DEPLOY_ENGINE_PORT",
    "LAUNCHDECK_KEEP_RELEASES",
    "LAUNCHDECK_DEPLOY_TIMEOUT_S",
    "LAUNCHDECK_DEPLOY_DEADLINE_S",
)


def test_defaults_follow_the_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Releases live in <state>/releases; the edge is 127.0.0.1:8000 for *.localhost."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAUNCHDECK_STATE_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.releases_dir == tmp_path / "releases"
    assert (settings.base_domain, settings.edge_bind, settings.edge_http_port) == (
        "localhost",
        "127.0.0.1",
        8000,
    )
    assert (settings.caddy_admin, settings.port, settings.keep_releases) == (None, 8090, 10)
    assert (settings.timeout_s, settings.deadline_s) == (600.0, 3600.0)
    assert settings.site_url("demo.localhost") == "http://demo.localhost:8000/"


def test_port_80_is_left_out_of_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site on the standard HTTP port gets a URL without `:80`."""
    monkeypatch.setenv("LAUNCHDECK_EDGE_HTTP_PORT", "80")
    monkeypatch.setenv("LAUNCHDECK_EDGE_BIND", "0.0.0.0")
    settings = Settings.from_env()
    assert settings.site_url("demo.example.com") == "http://demo.example.com/"
    assert settings.edge_probe_host == "127.0.0.1"


def test_bad_values_fail_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed or out-of-range value names the variable."""
    monkeypatch.setenv("LAUNCHDECK_KEEP_RELEASES", "0")
    with pytest.raises(SettingsError, match="LAUNCHDECK_KEEP_RELEASES"):
        Settings.from_env()
    monkeypatch.setenv("LAUNCHDECK_KEEP_RELEASES", "ten")
    with pytest.raises(SettingsError, match="LAUNCHDECK_KEEP_RELEASES"):
        Settings.from_env()
    monkeypatch.setenv("LAUNCHDECK_KEEP_RELEASES", "10")
    monkeypatch.setenv("LAUNCHDECK_DEPLOY_TIMEOUT_S", "0")
    with pytest.raises(SettingsError, match="LAUNCHDECK_DEPLOY_TIMEOUT_S"):
        Settings.from_env()
