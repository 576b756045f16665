"""The generator's settings: defaults, overrides, and refusals naming the variable."""

from __future__ import annotations

import pytest

from launchdeck.generator.settings import Settings
from launchdeck.libs.settings import SettingsError

VARIABLES = (
    "OLLAMA_URL",
    "OPENAI_BASE_URL",
    "LAUNCHDECK_GENERATOR_JOBS",
    "LAUNCHDECK_GENERATION_ACK_WAIT_S",
    "LAUNCHDECK_GENERATION_RETRY_BASE_S",
    "LAUNCHDECK_GENERATION_CALL_TIMEOUT_S",
    "LAUNCHDECK_GENERATION_STALL_TIMEOUT_S",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    """Without variables: local Ollama, api.openai.com, 4 jobs, AckWait 30 s, retries from 5 s."""
    settings = Settings.from_env()
    assert settings.ollama_url == "http://127.0.0.1:11434"
    assert settings.openai_base_url == "https://api.openai.com"
    assert (settings.jobs, settings.ack_wait_s, settings.retry_base_s) == (4, 30.0, 5.0)
    assert (settings.call_timeout_s, settings.stall_timeout_s) == (120.0, 900.0)


def test_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variable sets its setting."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("LAUNCHDECK_GENERATOR_JOBS", "2")
    monkeypatch.setenv("LAUNCHDECK_GENERATION_ACK_WAIT_S", "3")
    monkeypatch.setenv("LAUNCHDECK_GENERATION_RETRY_BASE_S", "0.5")
    monkeypatch.setenv("LAUNCHDECK_GENERATION_CALL_TIMEOUT_S", "30")
    settings = Settings.from_env()
    assert settings.openai_base_url == "http://vllm:8000/v1"
    assert (settings.jobs, settings.ack_wait_s, settings.retry_base_s) == (2, 3.0, 0.5)
    assert settings.call_timeout_s == 30.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LAUNCHDECK_GENERATOR_JOBS", "0"),
        ("LAUNCHDECK_GENERATOR_JOBS", "many"),
        ("LAUNCHDECK_GENERATION_ACK_WAIT_S", "0.5"),
        ("LAUNCHDECK_GENERATION_RETRY_BASE_S", "-1"),
        ("LAUNCHDECK_GENERATION_CALL_TIMEOUT_S", "0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        Settings.from_env()
