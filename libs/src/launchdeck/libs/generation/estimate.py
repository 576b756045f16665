"""What one item of a job may cost before any model is called: the one rule of the dry run
(control-api) and of the generator's budget reservation, so both say the same number.

An item's steps are rendered with placeholders for earlier outputs (`libs.prompts.render_steps`
without outputs). Per step (one user message): tokens in = `pricing.estimate_call` of its rendered
prompt, plus, for each earlier step whose output the prompt uses (`steps.<name>` or
`steps['<name>']` in its template), what that step may write — `max_tokens`, or
`DEFAULT_MAX_TOKENS` — since its real output replaces the placeholder; tokens out = `max_tokens`
or `DEFAULT_MAX_TOKENS`. An overestimate, as a reservation must be (an output used twice is
counted once: the overshoot stays bounded, see `budget`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from launchdeck.libs.generation.pricing import (
    DEFAULT_MAX_TOKENS,
    ZERO,
    CallEstimate,
    Price,
    cost,
    estimate_call,
)


def uses_output(prompt: str, step: str) -> bool:
    """Whether a prompt template may include `step`'s output."""
    pattern = rf"\bsteps\s*(?:\.\s*{re.escape(step)}\b|\[\s*['\"]{re.escape(step)}['\"]\s*\])"
    return re.search(pattern, prompt) is not None


def outputs_used(steps: Sequence[tuple[str, str]]) -> list[int]:
    """For each step (`(name, prompt template)`, in order): how many earlier steps' outputs
    its prompt uses."""
    return [
        sum(1 for earlier, _ in steps[:k] if uses_output(prompt, earlier))
        for k, (_, prompt) in enumerate(steps)
    ]


def item_estimate(
    rendered: Sequence[str], used: Sequence[int], max_tokens: int | None, price: Price
) -> CallEstimate:
    """The calls of one item: `rendered` prompts (placeholders for earlier outputs) and
    `used` from `outputs_used`."""
    out_per_call = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    tokens_in = tokens_out = 0
    usd = ZERO
    for prompt, earlier in zip(rendered, used, strict=True):
        call = estimate_call([{"role": "user", "content": prompt}], max_tokens, price)
        call_in = call.tokens_in + out_per_call * earlier
        tokens_in += call_in
        tokens_out += call.tokens_out
        usd += cost(call_in, call.tokens_out, price)
    return CallEstimate(tokens_in, tokens_out, usd)
