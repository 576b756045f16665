"""`launchdeck.libs.generation.fingerprint`: the response-cache key — only for reproducible
calls, stable across processes and dict orderings, different for anything that shapes the
answer."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from launchdeck.libs.generation.fingerprint import cacheable, fingerprint

BASE: dict[str, Any] = {
    "provider": "ollama",
    "model": "llama3.1:8b",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ü"}],
    "temperature": 0.7,
    "max_tokens": 256,
    "seed": 42,
    "options": {"num_ctx": 8192, "top_k": 40},
    "json_output": True,
    "json_schema": {"type": "object", "properties": {"a": {"type": "string"}, "b": {}}},
}


def key(**changes: Any) -> str | None:
    return fingerprint(**{**BASE, **changes})


def test_only_a_fixed_seed_or_temperature_zero_is_cacheable() -> None:
    """Sampling without a seed wants a fresh answer: no key."""
    assert cacheable(temperature=0.7, seed=1)
    assert cacheable(temperature=0, seed=None)
    assert cacheable(temperature=0.0, seed=None)
    assert not cacheable(temperature=0.7, seed=None)
    assert not cacheable(temperature=None, seed=None)  # the provider's default is not 0
    assert key(seed=None) is None
    assert key(seed=None, temperature=0) is not None


def test_the_key_ignores_dict_order_and_int_float_temperature() -> None:
    """Options, message and schema keys in any order, 0 or 0.0: one key."""
    reordered = {
        **BASE,
        "messages": [{"content": m["content"], "role": m["role"]} for m in BASE["messages"]],
        "options": {"top_k": 40, "num_ctx": 8192},
        "json_schema": {"properties": {"b": {}, "a": {"type": "string"}}, "type": "object"},
    }
    assert fingerprint(**reordered) == key()
    assert key(temperature=0, seed=None) == key(temperature=0.0, seed=None)
    value = key()
    assert value is not None
    assert len(value) == 64
    assert int(value, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"provider": "openai"},
        {"model": "llama3.1:70b"},
        {"messages": [{"role": "user", "content": "Hi ü"}]},
        {"messages": list(reversed(BASE["messages"]))},
        {"temperature": 0.8},
        {"max_tokens": 257},
        {"seed": 43},
        {"options": {"num_ctx": 4096, "top_k": 40}},
        {"options": {}},
        {"json_output": False},
        {"json_schema": None},
    ],
)
def test_anything_that_shapes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_the_key_is_the_same_in_another_process() -> None:
    """No hash randomisation or process state: a cache shared across jobs and restarts."""
    code = (
        "from launchdeck.libs.generation.fingerprint import fingerprint\n"
        f"print(fingerprint(**{BASE!r}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == key()


def test_non_finite_options_are_refused() -> None:
    """NaN has no canonical JSON: a caller error, not a key."""
    with pytest.raises(ValueError, match="JSON compliant"):
        key(options={"top_p": float("nan")})
