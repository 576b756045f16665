"""The response-cache key of one model call.

A call is cacheable only when its answer is meant to be reproducible: a fixed `seed` is given,
or `temperature` is 0. Otherwise (sampling without a seed) the caller wants a fresh answer each
time, and `fingerprint` returns None. The key is the SHA-256 (hex) of a canonical JSON of
everything that shapes the answer: provider, model name, the rendered messages (in order),
temperature, max_tokens, seed, the provider options and the JSON-output mode (with the step's
schema, when it has one). Canonical: object keys sorted at every depth, no whitespace, UTF-8,
the temperature as a float (0 and 0.0 are one key), a version tag first so a change of the rule
never serves old entries. The base URL is deliberately not part of it: the same model name on
two servers of a provider is taken to be the same model, so jobs share answers (a job can turn
the cache off).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

KEY_VERSION = "launchdeck.generation.cache.v1"


def cacheable(*, temperature: float | None, seed: int | None) -> bool:
    """A fixed seed, or greedy decoding (temperature 0)."""
    return seed is not None or (temperature is not None and float(temperature) == 0.0)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8; NaN and infinities refused (ValueError)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def fingerprint(
    *,
    provider: str,
    model: str,
    messages: Sequence[Mapping[str, str]],
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    options: Mapping[str, Any] | None = None,
    json_output: bool = False,
    json_schema: Mapping[str, Any] | None = None,
) -> str | None:
    """The cache key of a call (64 hex chars), or None when it is not cacheable."""
    if not cacheable(temperature=temperature, seed=seed):
        return None
    document = {
        "v": KEY_VERSION,
        "provider": provider,
        "model": model,
        "messages": [dict(m) for m in messages],
        "temperature": None if temperature is None else float(temperature),
        "max_tokens": max_tokens,
        "seed": seed,
        "options": dict(options or {}),
        "json_output": bool(json_output),
        "json_schema": None if json_schema is None else dict(json_schema),
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()
