"""Reading settings from the environment: fixed sets of words, and URLs fit for logs."""

from __future__ import annotations

import pytest

from launchdeck.libs.settings import SettingsError, env_choice, public_url

LEVELS = ("debug", "info", "warning")


def test_env_choice_takes_an_allowed_word_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """`DEBUG` and ` debug ` mean `debug`; unset or empty means the default."""
    monkeypatch.setenv("LD_TEST_CHOICE", " DEBUG ")
    assert env_choice("LD_TEST_CHOICE", LEVELS, "info") == "debug"
    monkeypatch.setenv("LD_TEST_CHOICE", "")
    assert env_choice("LD_TEST_CHOICE", LEVELS, "info") == "info"
    monkeypatch.delenv("LD_TEST_CHOICE")
    assert env_choice("LD_TEST_CHOICE", LEVELS, "warning") == "warning"


def test_env_choice_refuses_a_typo_naming_the_variable_and_the_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A word outside the set is an error, not the default in disguise."""
    monkeypatch.setenv("LD_TEST_CHOICE", "verbose")
    with pytest.raises(SettingsError) as caught:
        env_choice("LD_TEST_CHOICE", LEVELS, "info")
    assert str(caught.value) == (
        "environment variable LD_TEST_CHOICE must be one of debug, info, warning, got 'verbose'"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:secret@nats.example:4222", "nats://nats.example:4222"),
        ("nats://s3cr3t-token@nats.example", "nats://nats.example"),
        ("tls://u:p/w?x#y@nats.example:4222", "tls://nats.example:4222"),
        ("127.0.0.1:4222", "127.0.0.1:4222"),
        (
            "postgresql://ld:secret@db:5432/launchdeck?sslmode=require&password=secret",
            "postgresql://db:5432/launchdeck",
        ),
        ("postgresql://postgres:@/postgres?host=/tmp/pg", "postgresql:///postgres?host=/tmp/pg"),
    ],
)
def test_public_url_leaves_credentials_out(url: str, shown: str) -> None:
    """User, password, token and query parameters other than host/port never reach a log."""
    assert public_url(url) == shown
