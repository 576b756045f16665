"""The per-item estimate shared by the dry run and the generator's reservation."""

from __future__ import annotations

from decimal import Decimal

from launchdeck.libs.generation.estimate import item_estimate, outputs_used, uses_output
from launchdeck.libs.generation.pricing import DEFAULT_MAX_TOKENS, Price, estimate_tokens


def test_an_earlier_output_is_seen_in_either_spelling_and_only_by_its_name() -> None:
    assert uses_output("Page for {{ steps.outline.output.title }}", "outline")
    assert uses_output("{{ steps [ 'outline' ].output }}", "outline")
    assert not uses_output("{{ steps.outline_v2.output }}", "outline")
    assert not uses_output("an outline of {{ city }}", "outline")


def test_outputs_used_counts_earlier_steps_only() -> None:
    steps = [
        ("a", "{{ city }}"),
        ("b", "{{ steps.a.output }}"),
        ("c", "{{ steps.a.output }} {{ steps.b.output }} {{ steps.c.output }}"),
    ]
    assert outputs_used(steps) == [0, 1, 2]


def test_an_item_costs_its_prompts_plus_the_outputs_it_reads() -> None:
    price = Price(Decimal(1), Decimal(2))  # USD per million tokens
    prompts = ["x" * 30, "y" * 60]
    estimate = item_estimate(prompts, [0, 1], 100, price)
    tokens_in = (estimate_tokens(prompts[0]) + 4) + (estimate_tokens(prompts[1]) + 4 + 100)
    assert (estimate.tokens_in, estimate.tokens_out) == (tokens_in, 200)
    assert estimate.usd == Decimal(tokens_in * 1 + 200 * 2) / 1_000_000
    unbounded = item_estimate(prompts[:1], [0], None, price)
    assert unbounded.tokens_out == DEFAULT_MAX_TOKENS
