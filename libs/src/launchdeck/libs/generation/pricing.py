"""What a call costs: prices per model in USD per million tokens, and a token estimate for
reservations.

- **Money is `Decimal`**, never float: a job adds up thousands of small costs, and a budget
  comparison must not flip on a binary rounding error. Prices given as numbers (JSON, settings)
  are converted through `str()`, so `0.15` is exactly 0.15. A call's cost is rounded half-up to
  1e-6 USD (`COST_QUANTUM`); a job's total is the sum of its calls' rounded costs.
- **The table** maps `"<provider>/<model>"` or a bare `"<model>"` to a `Price`; the provider-
  qualified key wins. `DEFAULT_PRICES` is empty on purpose: local models (Ollama, vLLM, llama.cpp)
  cost 0 unless the operator prices them, and Launchdeck ships no list of vendor prices that
  would go stale. A job's own `prices` override the table.
- **Cost comes from the provider's usage fields** (`ChatResult.tokens_in/out`). `estimate_tokens`
  is only for reserving budget before a call and for dry-run estimates: a deliberate overestimate
  (UTF-8 bytes / 3, rounded up; real tokenizers average about 4 bytes per token on English text
  and code; CJK text, 3 bytes a character at about a token each, comes close to the estimate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import msgspec

MTOK = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.000001")
ZERO = Decimal(0)
BYTES_PER_TOKEN = 3
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators a chat template adds per message
DEFAULT_MAX_TOKENS = 1024  # what a reservation assumes the model writes when max_tokens is unset
# Far above any real price; keeps a cost within Decimal's 28 digits at 1e-6 USD.
MAX_PRICE_PER_MTOK = Decimal(1_000_000)


class PricingError(ValueError):
    """A price that is not a finite, non-negative number; `field` is a path into the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def to_decimal(value: Any, field: str) -> Decimal:
    """A non-negative finite amount as a Decimal (floats through `str`, so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise PricingError(field, "must be a number")
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise PricingError(field, "must be a number") from None
    if not amount.is_finite() or amount < 0:
        raise PricingError(field, "must be a finite number ≥ 0")
    return amount


@dataclass(frozen=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_mtok: Decimal = ZERO
    output_per_mtok: Decimal = ZERO

    @classmethod
    def parse(cls, value: Any, field: str = "prices") -> Price:
        """From `{"input_per_mtok": n, "output_per_mtok": n}` (both required)."""
        if not isinstance(value, Mapping):
            raise PricingError(field, "must be an object")
        unknown = sorted(set(value) - {"input_per_mtok", "output_per_mtok"})
        if unknown:
            raise PricingError(f"{field}.{unknown[0]}", "unknown field")
        for key in ("input_per_mtok", "output_per_mtok"):
            if key not in value:
                raise PricingError(f"{field}.{key}", "required")
        return cls(
            _price(value["input_per_mtok"], f"{field}.input_per_mtok"),
            _price(value["output_per_mtok"], f"{field}.output_per_mtok"),
        )


def _price(value: Any, field: str) -> Decimal:
    amount = to_decimal(value, field)
    if amount > MAX_PRICE_PER_MTOK:
        raise PricingError(field, f"more than {MAX_PRICE_PER_MTOK} USD per million tokens")
    return amount


FREE = Price()
DEFAULT_PRICES: Mapping[str, Price] = {}


class PriceTable:
    """Prices by `"<provider>/<model>"` or `"<model>"`; unknown models cost 0 (`FREE`)."""

    def __init__(self, prices: Mapping[str, Price] = DEFAULT_PRICES) -> None:
        self._prices = dict(prices)

    @classmethod
    def parse_json(cls, text: str | bytes, field: str = "prices") -> PriceTable:
        """From JSON such as a setting's value:
        `{"openai/gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}`."""
        try:
            raw = msgspec.json.decode(text) if text.strip() else {}
        except msgspec.DecodeError as exc:
            raise PricingError(field, f"invalid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise PricingError(field, "must be an object of model → price")
        return cls({str(key): Price.parse(value, f"{field}.{key}") for key, value in raw.items()})

    def price_for(self, provider: str, model: str) -> Price:
        return self._prices.get(f"{provider}/{model}") or self._prices.get(model) or FREE


def job_price(
    table: PriceTable, provider: str, model: str, override: Mapping[str, Any] | None = None
) -> Price:
    """The price a job pays: its own `prices` when given, else the table's."""
    if override is not None:
        return Price.parse(override, "prices")
    return table.price_for(provider, model)


def cost(tokens_in: int, tokens_out: int, price: Price) -> Decimal:
    """USD for a call's usage, rounded half-up to 1e-6."""
    raw = (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / MTOK
    return raw.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def usd_text(amount: Decimal) -> str:
    """USD as the API and the messages write it: a plain decimal string, rounded to 1e-6,
    trailing zeros dropped (`0.00125`, `12`, `0`) — never a float, never `1E-6`."""
    return format(amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP).normalize(), "f")


def estimate_tokens(text: str) -> int:
    """An overestimate of `text`'s tokens for reservations: ceil(UTF-8 bytes / 3)."""
    return math.ceil(len(text.encode()) / BYTES_PER_TOKEN)


@dataclass(frozen=True)
class CallEstimate:
    tokens_in: int
    tokens_out: int
    usd: Decimal

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


def estimate_call(
    messages: Sequence[Mapping[str, str]], max_tokens: int | None, price: Price
) -> CallEstimate:
    """What to reserve before a call: the rendered messages' estimate (plus a per-message
    overhead) in, `max_tokens` (or `DEFAULT_MAX_TOKENS`) out, and their cost."""
    tokens_in = sum(
        estimate_tokens(str(m.get("content", ""))) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )
    tokens_out = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    return CallEstimate(tokens_in, tokens_out, cost(tokens_in, tokens_out, price))
