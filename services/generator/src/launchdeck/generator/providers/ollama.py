"""Ollama's native API (`POST /api/chat`, not streamed): the only one that takes `options`
such as `num_ctx`, which the OpenAI-compatible endpoint of Ollama ignores."""

from __future__ import annotations

from typing import Any

import aiohttp

from launchdeck.generator.providers.errors import TransientError
from launchdeck.generator.providers.http import (
    DEFAULT_TIMEOUT_S,
    check_json_content,
    post_json,
    token_count,
    trim,
)
from launchdeck.generator.providers.types import ChatRequest, ChatResult


class OllamaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/api/chat"
        self._timeout_s = timeout_s

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.seed is not None:
            options["seed"] = request.seed
        options.update(request.options)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [dict(m) for m in request.messages],
            "stream": False,
            "options": options,
        }
        if request.json_output:
            body["format"] = "json"
        return body

    async def chat(self, request: ChatRequest) -> ChatResult:
        answer = await post_json(
            self._session, self._url, self.payload(request), timeout_s=self._timeout_s
        )
        message = answer.body.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise TransientError(trim(f"answer without message content: {answer.body}"))
        if request.json_output:
            check_json_content(content, None)
        model = answer.body.get("model")
        reason = answer.body.get("done_reason")
        return ChatResult(
            content=content,
            # Ollama omits prompt_eval_count when the prompt was cached: 0, not a guess.
            tokens_in=token_count(answer.body.get("prompt_eval_count")),
            tokens_out=token_count(answer.body.get("eval_count")),
            latency_s=answer.latency_s,
            model=model if isinstance(model, str) else request.model,
            finish_reason=reason if isinstance(reason, str) else None,
        )
