"""control-api settings from the environment: the operator limits (deadlines of the stuck-jobs
sweep, retention of what pruning deletes) — defaults, values, and refusals naming the variable."""

from __future__ import annotations

import pytest

from launchdeck.libs.settings import SettingsError
from tests.control_api.support import make_settings

DAY = 86400.0
LIMITS = (
    "LAUNCHDECK_BUILD_MAX_TIMEOUT_S",
    "LAUNCHDECK_STUCK_BUILD_GRACE_S",
    "LAUNCHDECK_DEPLOY_DEADLINE_S",
    "LAUNCHDECK_STUCK_SWEEP_INTERVAL_S",
    "LAUNCHDECK_BUILD_LOG_RETENTION_DAYS",
    "LAUNCHDECK_PROCESSED_EVENTS_RETENTION_DAYS",
    "LAUNCHDECK_KEEP_ARTIFACTS",
    "LAUNCHDECK_PRUNE_INTERVAL_S",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LIMITS:
        monkeypatch.delenv(name, raising=False)


def test_operator_limits_defaults_and_values() -> None:
    """1 h longest build + 30 min grace, 1 h deploy deadline, a sweep a minute; logs 90 days,
    processed events 7, 10 artifacts kept per project, pruning hourly; each can be set."""
    settings = make_settings("postgresql://unused", "nats://unused")
    assert (settings.build_max_timeout_s, settings.stuck_build_grace_s) == (3600.0, 1800.0)
    assert (settings.deploy_deadline_s, settings.stuck_sweep_interval_s) == (3600.0, 60.0)
    assert settings.build_log_retention_s == 90 * DAY
    assert settings.processed_events_retention_s == 7 * DAY
    assert (settings.keep_artifacts, settings.prune_interval_s) == (10, 3600.0)

    settings = make_settings(
        "postgresql://unused",
        "nats://unused",
        LAUNCHDECK_BUILD_MAX_TIMEOUT_S="600",
        LAUNCHDECK_STUCK_BUILD_GRACE_S="60",
        LAUNCHDECK_DEPLOY_DEADLINE_S="900",
        LAUNCHDECK_STUCK_SWEEP_INTERVAL_S="5",
        LAUNCHDECK_BUILD_LOG_RETENTION_DAYS="30",
        LAUNCHDECK_PROCESSED_EVENTS_RETENTION_DAYS="0.5",
        LAUNCHDECK_KEEP_ARTIFACTS="3",
        LAUNCHDECK_PRUNE_INTERVAL_S="60",
    )
    assert (settings.build_max_timeout_s, settings.stuck_build_grace_s) == (600.0, 60.0)
    assert (settings.deploy_deadline_s, settings.stuck_sweep_interval_s) == (900.0, 5.0)
    assert settings.build_log_retention_s == 30 * DAY
    assert settings.processed_events_retention_s == DAY / 2
    assert (settings.keep_artifacts, settings.prune_interval_s) == (3, 60.0)


@pytest.mark.parametrize("name", LIMITS)
def test_a_limit_of_zero_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        make_settings("postgresql://unused", "nats://unused", **{name: "0"})


def test_the_previous_secret_key_is_optional_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LAUNCHDECK_SECRET_KEY_PREVIOUS (during a key rotation) is read when set; neither key
    appears in the settings' repr (a log line or a traceback that prints them)."""
    monkeypatch.delenv("LAUNCHDECK_SECRET_KEY_PREVIOUS", raising=False)
    assert make_settings("postgresql://unused", "nats://unused").secret_key_previous is None
    settings = make_settings(
        "postgresql://unused", "nats://unused", LAUNCHDECK_SECRET_KEY_PREVIOUS="old-key-x9"
    )
    assert settings.secret_key_previous == "old-key-x9"
    assert "old-key-x9" not in repr(settings)
    assert settings.secret_key not in repr(settings)
