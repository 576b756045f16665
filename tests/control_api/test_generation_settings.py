"""The control-api's generation settings: the item limit and the operator's price table, read
from the environment; a bad value stops the service at start with a message naming it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from launchdeck.control_api.settings import GenerationSettings
from launchdeck.libs.settings import SettingsError


def test_defaults_and_a_price_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 items and no prices by default; a table prices by provider/model or model."""
    monkeypatch.delenv("LAUNCHDECK_GENERATION_MAX_ITEMS", raising=False)
    monkeypatch.delenv("LAUNCHDECK_GENERATION_PRICES", raising=False)
    default = GenerationSettings.from_env()
    assert default.max_items == 100_000
    assert default.prices.price_for("openai", "gpt-4o-mini").input_per_mtok == 0
    monkeypatch.setenv("LAUNCHDECK_GENERATION_MAX_ITEMS", "500")
    monkeypatch.setenv(
        "LAUNCHDECK_GENERATION_PRICES",
        '{"openai/gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}',
    )
    settings = GenerationSettings.from_env()
    assert settings.max_items == 500
    price = settings.prices.price_for("openai", "gpt-4o-mini")
    assert (price.input_per_mtok, price.output_per_mtok) == (Decimal("0.15"), Decimal("0.6"))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LAUNCHDECK_GENERATION_PRICES", "{not json", "invalid JSON"),
        (
            "LAUNCHDECK_GENERATION_PRICES",
            '{"m": {"input_per_mtok": -1, "output_per_mtok": 0}}',
            "LAUNCHDECK_GENERATION_PRICES.m.input_per_mtok",
        ),
        ("LAUNCHDECK_GENERATION_PRICES", "[1]", "must be an object"),
        ("LAUNCHDECK_GENERATION_MAX_ITEMS", "0", "between 1 and"),
    ],
)
def test_a_bad_value_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message.replace(".", r"\.").replace("[", r"\[")):
        GenerationSettings.from_env()
