"""Where the client commands find the API URL and token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launchdeck.cli.config import ConfigError, resolve_config
from launchdeck.cli.devstate import state_dir


def write_dev_json(directory: Path, api_url: str = "http://dev:1", token: str = "tok") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dev.json").write_text(json.dumps({"api_url": api_url, "admin_token": token}))


def test_flags_win_over_environment_and_dev_json(tmp_path: Path) -> None:
    """--api-url/--token beat LAUNCHDECK_API_URL/LAUNCHDECK_TOKEN and dev.json."""
    write_dev_json(tmp_path)
    env = {"LAUNCHDECK_API_URL": "http://env:2", "LAUNCHDECK_TOKEN": "env-token"}
    config = resolve_config(
        api_url="http://flag:3/", token="flag-token", environ=env, state=tmp_path
    )
    assert (config.api_url, config.token) == ("http://flag:3", "flag-token")
    assert (config.api_url_source, config.token_source) == ("flag", "flag")


def test_environment_wins_over_dev_json(tmp_path: Path) -> None:
    """Without flags the environment variables are used before dev.json."""
    write_dev_json(tmp_path)
    env = {"LAUNCHDECK_API_URL": "http://env:2", "LAUNCHDECK_TOKEN": "env-token"}
    config = resolve_config(api_url=None, token=None, environ=env, state=tmp_path)
    assert (config.api_url, config.token) == ("http://env:2", "env-token")


def test_dev_json_of_the_state_dir_is_the_fallback(tmp_path: Path) -> None:
    """With nothing else set, dev.json in LAUNCHDECK_STATE_DIR provides api_url and admin_token."""
    write_dev_json(tmp_path / "state")
    env = {"LAUNCHDECK_STATE_DIR": str(tmp_path / "state")}
    config = resolve_config(api_url=None, token=None, environ=env)
    assert (config.api_url, config.token) == ("http://dev:1", "tok")
    assert config.token_source == str(tmp_path / "state" / "dev.json")


def test_each_value_is_resolved_on_its_own(tmp_path: Path) -> None:
    """A URL flag combines with the token of dev.json (and an env token with its URL)."""
    write_dev_json(tmp_path)
    config = resolve_config(api_url="http://flag:3", token=None, environ={}, state=tmp_path)
    assert (config.api_url, config.token) == ("http://flag:3", "tok")
    config = resolve_config(
        api_url=None, token=None, environ={"LAUNCHDECK_TOKEN": "env-token"}, state=tmp_path
    )
    assert (config.api_url, config.token) == ("http://dev:1", "env-token")


def test_missing_configuration_says_how_to_provide_it(tmp_path: Path) -> None:
    """Nothing configured: the error names the flag, the variable and dev.json."""
    with pytest.raises(ConfigError, match=r"--api-url.*LAUNCHDECK_API_URL.*dev\.json"):
        resolve_config(api_url=None, token=None, environ={}, state=tmp_path)
    with pytest.raises(ConfigError, match=r"--token.*LAUNCHDECK_TOKEN"):
        resolve_config(api_url="http://x:1", token=None, environ={}, state=tmp_path)


def test_state_dir_defaults_to_dot_launchdeck_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LAUNCHDECK_STATE_DIR when set, else ./.launchdeck, always absolute."""
    monkeypatch.chdir(tmp_path)
    assert state_dir({}) == tmp_path.resolve() / ".launchdeck"
    assert state_dir({"LAUNCHDECK_STATE_DIR": "rel/state"}) == tmp_path.resolve() / "rel/state"
