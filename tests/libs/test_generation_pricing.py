"""`launchdeck.libs.generation.pricing`: exact Decimal costs from usage, a table where unknown
models are free, a job's override, and an estimate that errs high."""

from __future__ import annotations

from decimal import Decimal

import pytest

from launchdeck.libs.generation import pricing
from launchdeck.libs.generation.pricing import Price, PriceTable, PricingError


def test_cost_is_exact_decimal_rounded_half_up_to_a_micro_dollar() -> None:
    """0.15/0.60 USD per Mtok: 1,000 in and 500 out is 0.00045 exactly, never 0.000449999."""
    price = Price.parse({"input_per_mtok": 0.15, "output_per_mtok": 0.6})
    assert price == Price(Decimal("0.15"), Decimal("0.6"))
    assert pricing.cost(1000, 500, price) == Decimal("0.000450")
    assert pricing.cost(3, 0, price) == Decimal("0.000000")  # 0.00000045 rounds down
    assert pricing.cost(4, 0, price) == Decimal("0.000001")  # 0.0000006 rounds up
    assert pricing.cost(10**12, 10**12, Price(Decimal(1_000_000), Decimal(1_000_000))) == Decimal(
        "2000000000000.000000"
    )
    total = sum((pricing.cost(1000, 500, price) for _ in range(1000)), Decimal(0))
    assert total == Decimal("0.45")


def test_unknown_models_are_free_and_the_qualified_key_wins() -> None:
    """The default table is empty: local models cost 0 unless priced."""
    assert pricing.DEFAULT_PRICES == {}
    assert PriceTable().price_for("ollama", "llama3.1") == pricing.FREE
    table = PriceTable.parse_json(
        '{"gpt-4o-mini": {"input_per_mtok": 1, "output_per_mtok": 2},'
        ' "openai/gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}}'
    )
    assert table.price_for("openai", "gpt-4o-mini") == Price(Decimal("0.15"), Decimal("0.60"))
    assert table.price_for("ollama", "gpt-4o-mini") == Price(Decimal(1), Decimal(2))
    assert table.price_for("openai", "other") == pricing.FREE
    assert PriceTable.parse_json("  ").price_for("openai", "x") == pricing.FREE


def test_a_jobs_prices_override_the_table() -> None:
    """`prices` in the request wins, even for a model the table prices."""
    table = PriceTable({"m": Price(Decimal(5), Decimal(5))})
    assert pricing.job_price(table, "openai", "m") == Price(Decimal(5), Decimal(5))
    override = {"input_per_mtok": 0, "output_per_mtok": 0.5}
    assert pricing.job_price(table, "openai", "m", override) == Price(Decimal(0), Decimal("0.5"))


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ([1], "prices", "must be an object"),
        ({"input_per_mtok": 1}, "prices.output_per_mtok", "required"),
        ({"input_per_mtok": 1, "output_per_mtok": 1, "x": 1}, "prices.x", "unknown"),
        ({"input_per_mtok": -1, "output_per_mtok": 1}, "prices.input_per_mtok", "≥ 0"),
        ({"input_per_mtok": "nan", "output_per_mtok": 1}, "prices.input_per_mtok", "finite"),
        ({"input_per_mtok": True, "output_per_mtok": 1}, "prices.input_per_mtok", "a number"),
        ({"input_per_mtok": "abc", "output_per_mtok": 1}, "prices.input_per_mtok", "a number"),
        ({"input_per_mtok": 1e30, "output_per_mtok": 1}, "prices.input_per_mtok", "more than"),
    ],
)
def test_bad_prices_name_their_field(value: object, field: str, fragment: str) -> None:
    """A bad price is a field error for the API, not a crash in the executor."""
    with pytest.raises(PricingError) as caught:
        Price.parse(value)
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_a_bad_price_table_setting_is_refused() -> None:
    with pytest.raises(PricingError, match="invalid JSON"):
        PriceTable.parse_json("{")
    with pytest.raises(PricingError, match=r"prices\.m\.input_per_mtok"):
        PriceTable.parse_json('{"m": {"input_per_mtok": -1, "output_per_mtok": 0}}')


def test_the_token_estimate_is_utf8_bytes_over_three_rounded_up() -> None:
    """An overestimate for English (about 4 bytes a token); multi-byte text counts its bytes."""
    assert pricing.estimate_tokens("") == 0
    assert pricing.estimate_tokens("abcd") == 2
    assert pricing.estimate_tokens("a" * 300) == 100
    assert pricing.estimate_tokens("ü") == 1  # 2 bytes
    assert pricing.estimate_tokens("日本語") == 3  # 9 bytes


def test_a_call_estimate_adds_message_overhead_and_max_tokens() -> None:
    """Reservations assume the model writes `max_tokens` (or the default when unset)."""
    price = Price(Decimal(1), Decimal(2))
    messages = [{"role": "system", "content": "x" * 30}, {"role": "user", "content": "y" * 3}]
    estimate = pricing.estimate_call(messages, 100, price)
    assert (estimate.tokens_in, estimate.tokens_out) == (10 + 4 + 1 + 4, 100)
    assert estimate.tokens == 119
    assert estimate.usd == pricing.cost(19, 100, price)
    assert pricing.estimate_call(messages, None, price).tokens_out == pricing.DEFAULT_MAX_TOKENS
