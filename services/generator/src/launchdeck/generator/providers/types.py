"""What the generator asks of a chat model and what it gets back, whatever the provider."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """One chat completion. `options` are provider-specific extras: for Ollama they go into the
    body's `options` object (`num_ctx`, `top_k`, ...); for OpenAI-compatible servers they are
    merged into the top-level body (`top_p`, `stop`, ...) and override the generic fields."""

    model: str
    messages: Sequence[Mapping[str, str]]
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    json_output: bool = False


@dataclass(frozen=True, kw_only=True)
class ChatResult:
    """Tokens come from the provider's usage fields, 0 when it omits them (never estimated
    from string lengths: the budget settles on what the provider says it counted)."""

    content: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    model: str
    finish_reason: str | None = None


class ChatClient(Protocol):
    """What the executor needs from a provider: one call, errors classified (see errors.py)."""

    def chat(self, request: ChatRequest) -> Awaitable[ChatResult]: ...
