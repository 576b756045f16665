"""A fake LLM server over real HTTP speaking Ollama's `/api/chat` and the OpenAI-compatible
`/v1/chat/completions`, for the generator's tests and benchmarks.

Calls are counted per prompt (the content of the request's last message), so a test can prove
that a resumed job never paid for an item twice. Behaviour is set on the `FakeLLM` object: latency,
the answer function, token counts (or no usage at all), failure rules (the first N calls of a
prompt, or all of them), a Bearer key, the known models.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Mode = Literal["status", "timeout", "drop", "invalid_json"]


@dataclass(frozen=True)
class Prompt:
    """What the answer function sees."""

    api: Literal["ollama", "openai"]
    model: str
    text: str
    json_output: bool
    body: dict[str, Any]


def default_answer(prompt: Prompt) -> str:
    """Deterministic: the same prompt always gets the same answer; JSON when JSON was asked."""
    digest = hashlib.sha256(prompt.text.encode()).hexdigest()[:12]
    if prompt.json_output:
        return json.dumps({"answer": f"answer {digest}", "prompt": prompt.text[:80]})
    return f"Answer {digest} to: {prompt.text}"


def default_tokens(prompt: Prompt, content: str) -> tuple[int, int]:
    return len(prompt.text.split()) + 10, len(content.split())


@dataclass
class Failure:
    """A failure rule: `mode` for the first `first` calls of each matching prompt (None: every
    call). `match` is a substring of the prompt (None: every prompt)."""

    mode: Mode = "status"
    status: int = 503
    message: str = "server overloaded"
    first: int | None = 1
    match: str | None = None
    retry_after: str | None = None

    def applies(self, prompt: str, call_number: int) -> bool:
        if self.match is not None and self.match not in prompt:
            return False
        return self.first is None or call_number <= self.first


@dataclass
class FakeLLM:
    url: str = ""
    latency_s: float = 0.0
    answer: Callable[[Prompt], str] = default_answer
    tokens: Callable[[Prompt, str], tuple[int, int]] | None = default_tokens
    failures: list[Failure] = field(default_factory=list)
    api_key: str | None = None
    models: set[str] | None = None
    calls: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hang_s: float = 30.0
    # Wall-clock times (time.time()) of the first and the latest call: what a benchmark in
    # another process reads through `GET /_stats`.
    first_call_at: float | None = None
    last_call_at: float | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    def fail(self, mode: Mode = "status", **kwargs: Any) -> Failure:
        rule = Failure(mode=mode, **kwargs)
        self.failures.append(rule)
        return rule

    def reset(self) -> None:
        self.first_call_at = self.last_call_at = None
        self.calls.clear()
        self.requests.clear()
        self.failures.clear()
        self.max_in_flight = 0

    # -- handlers

    async def stats(self, request: web.Request) -> web.Response:
        """`GET /_stats`: calls so far and when the first and latest came; `POST` resets."""
        if request.method == "POST":
            self.reset()
        return web.json_response(
            {
                "calls": self.total_calls,
                "distinct_prompts": len(self.calls),
                "max_in_flight": self.max_in_flight,
                "first_call_at": self.first_call_at,
                "last_call_at": self.last_call_at,
            }
        )

    async def ollama_chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        fmt = body.get("format")
        prompt = Prompt("ollama", body.get("model", ""), _last(body), fmt is not None, body)
        return await self._answer(request, prompt)

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None:
            presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if presented != self.api_key:
                # Like some real servers, echo the refused key: the client must redact it.
                return _openai_error(401, f"Incorrect API key provided: {presented}", "auth")
        body = await request.json()
        fmt = (body.get("response_format") or {}).get("type")
        json_output = fmt in ("json_object", "json_schema")
        prompt = Prompt("openai", body.get("model", ""), _last(body), json_output, body)
        return await self._answer(request, prompt)

    async def _answer(self, request: web.Request, prompt: Prompt) -> web.StreamResponse:
        self.requests.append(prompt.body)
        self.last_call_at = time.time()
        if self.first_call_at is None:
            self.first_call_at = self.last_call_at
        self.calls[prompt.text] += 1
        call_number = self.calls[prompt.text]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if self.models is not None and prompt.model not in self.models:
                return _not_found(prompt)
            for rule in self.failures:
                if rule.applies(prompt.text, call_number):
                    failed = await self._fail(request, prompt, rule)
                    if failed is not None:
                        return failed
            return self._success(prompt, self.answer(prompt))
        finally:
            self.in_flight -= 1

    async def _fail(
        self, request: web.Request, prompt: Prompt, rule: Failure
    ) -> web.StreamResponse | None:
        if rule.mode == "timeout":
            with suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.hang_s)
            return web.Response(status=504)
        if rule.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if rule.mode == "invalid_json":
            return self._success(prompt, "this is {not json")
        headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
        if prompt.api == "ollama":
            return web.json_response({"error": rule.message}, status=rule.status, headers=headers)
        return _openai_error(rule.status, rule.message, "server_error", headers)

    def _success(self, prompt: Prompt, content: str) -> web.Response:
        counts = self.tokens(prompt, content) if self.tokens is not None else None
        if prompt.api == "ollama":
            body: dict[str, Any] = {
                "model": prompt.model,
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": content},
                "done": True,
                "done_reason": "stop",
            }
            if counts is not None:
                body["prompt_eval_count"], body["eval_count"] = counts
            return web.json_response(body)
        body = {
            "id": f"chatcmpl-{self.total_calls}",
            "object": "chat.completion",
            "model": prompt.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
        if counts is not None:
            body["usage"] = {
                "prompt_tokens": counts[0],
                "completion_tokens": counts[1],
                "total_tokens": counts[0] + counts[1],
            }
        return web.json_response(body)


def _last(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    return str(messages[-1].get("content", ""))


def _openai_error(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    error = {"error": {"message": message, "type": kind, "code": None}}
    return web.json_response(error, status=status, headers=headers)


def _not_found(prompt: Prompt) -> web.Response:
    if prompt.api == "ollama":
        message = f'model "{prompt.model}" not found, try pulling it first'
        return web.json_response({"error": message}, status=404)
    return _openai_error(404, f"The model `{prompt.model}` does not exist", "model_not_found")


def _runner(fake: FakeLLM) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/api/chat", fake.ollama_chat)
    app.router.add_post("/v1/chat/completions", fake.openai_chat)
    app.router.add_get("/_stats", fake.stats)
    app.router.add_post("/_stats", fake.stats)
    # Handlers are cancelled when the client goes away: a "timeout" answer does not linger.
    return web.AppRunner(app, handler_cancellation=True, access_log=None)


@asynccontextmanager
async def running_fake_llm(host: str = "127.0.0.1") -> AsyncIterator[FakeLLM]:
    """The fake on a free port of `host`; `fake.url` is its root (both APIs live under it)."""
    fake = FakeLLM()
    runner = _runner(fake)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        fake._closing.set()
        await runner.cleanup()


async def _serve(host: str, port: int, latency_s: float) -> None:
    fake = FakeLLM(latency_s=latency_s)
    runner = _runner(fake)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"fake LLM at http://{host}:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    # A separate process for benchmarks and manual runs: `python -m tests.fake_llm --port 11434`.
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.latency))
