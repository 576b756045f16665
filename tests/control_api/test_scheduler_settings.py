"""The scheduler's settings: defaults (a 1 s poll, a 10 s lease, the edge of `launchdeck dev`),
values, and refusals naming the variable."""

from __future__ import annotations

import pytest

from launchdeck.control_api.settings import SchedulerSettings
from launchdeck.libs.settings import SettingsError
from tests.control_api.support import make_settings

VARIABLES = (
    "LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S",
    "LAUNCHDECK_SCHEDULER_LEASE_TTL_S",
    "LAUNCHDECK_EDGE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_values() -> None:
    settings = make_settings("postgresql://unused", "nats://unused")
    assert settings.scheduler == SchedulerSettings(
        poll_interval_s=1.0, lease_ttl_s=10.0, edge_url="http://127.0.0.1:8000"
    )
    settings = make_settings(
        "postgresql://unused",
        "nats://unused",
        LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S="0.5",
        LAUNCHDECK_SCHEDULER_LEASE_TTL_S="4",
        LAUNCHDECK_EDGE_URL="https://edge.internal:8443/",
    )
    assert settings.scheduler == SchedulerSettings(
        poll_interval_s=0.5, lease_ttl_s=4.0, edge_url="https://edge.internal:8443"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S", "0"),
        ("LAUNCHDECK_SCHEDULER_POLL_INTERVAL_S", "61"),
        ("LAUNCHDECK_SCHEDULER_LEASE_TTL_S", "0.5"),
        ("LAUNCHDECK_SCHEDULER_LEASE_TTL_S", "31"),  # longer than the leases bucket keeps a key
        ("LAUNCHDECK_EDGE_URL", "edge:8000"),
    ],
)
def test_bad_values_stop_the_service_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        make_settings("postgresql://unused", "nats://unused", **{variable: value})
