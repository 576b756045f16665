"""LLM providers: Ollama's native API and any OpenAI-compatible server, behind one call
(`ChatClient.chat`) with errors classified as transient or permanent."""

from __future__ import annotations

import aiohttp

from launchdeck.generator.providers.errors import PermanentError, ProviderError, TransientError
from launchdeck.generator.providers.http import DEFAULT_TIMEOUT_S, open_session
from launchdeck.generator.providers.ollama import OllamaClient
from launchdeck.generator.providers.openai import OpenAIClient
from launchdeck.generator.providers.types import ChatClient, ChatRequest, ChatResult

__all__ = [
    "ChatClient",
    "ChatRequest",
    "ChatResult",
    "OllamaClient",
    "OpenAIClient",
    "PermanentError",
    "ProviderError",
    "TransientError",
    "make_client",
    "open_session",
]


def make_client(
    provider: str,
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    api_key: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ChatClient:
    """`provider` is a job's `ollama` or `openai`."""
    if provider == "ollama":
        return OllamaClient(session, base_url, timeout_s=timeout_s)
    if provider == "openai":
        return OpenAIClient(session, base_url, api_key=api_key, timeout_s=timeout_s)
    raise ValueError(f"unknown provider {provider!r} (expected ollama or openai)")
