"""Any OpenAI-compatible `POST /v1/chat/completions` (OpenAI, vLLM, llama.cpp server, ...).

The API key is held here only: sent as a Bearer header, redacted from every error reason (some
servers echo the key they refused), never logged.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from launchdeck.generator.providers.errors import TransientError
from launchdeck.generator.providers.http import (
    DEFAULT_TIMEOUT_S,
    check_json_content,
    post_json,
    redact,
    token_count,
    trim,
)
from launchdeck.generator.providers.types import ChatRequest, ChatResult


class OpenAIClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """`base_url` is the server's root or its `/v1` (both are accepted)."""
        self._session = session
        root = base_url.rstrip("/")
        self._url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self._api_key = api_key or None
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"OpenAIClient(url={self._url!r}, api_key={'set' if self._api_key else 'unset'})"

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [dict(m) for m in request.messages],
            "stream": False,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.seed is not None:
            body["seed"] = request.seed
        if request.json_output:
            body["response_format"] = {"type": "json_object"}
        body.update(request.options)
        return body

    async def chat(self, request: ChatRequest) -> ChatResult:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
        answer = await post_json(
            self._session,
            self._url,
            self.payload(request),
            timeout_s=self._timeout_s,
            headers=headers,
            secret=self._api_key,
        )
        choices = answer.body.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            text = redact(trim(f"answer without message content: {answer.body}"), self._api_key)
            raise TransientError(text)
        if request.json_output:
            check_json_content(content, self._api_key)
        usage = answer.body.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        model = answer.body.get("model")
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        return ChatResult(
            content=content,
            tokens_in=token_count(usage.get("prompt_tokens")),
            tokens_out=token_count(usage.get("completion_tokens")),
            latency_s=answer.latency_s,
            model=model if isinstance(model, str) else request.model,
            finish_reason=reason if isinstance(reason, str) else None,
        )
