"""The provider clients against the fake LLM over real HTTP: requests, usage, error classes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from launchdeck.generator.limits import with_retries
from launchdeck.generator.providers import (
    ChatClient,
    ChatRequest,
    OllamaClient,
    OpenAIClient,
    PermanentError,
    TransientError,
    make_client,
    open_session,
)
from launchdeck.generator.providers.http import error_message, redact, retry_after, trim
from tests.fake_llm import FakeLLM

KEY = "sk-test-0123456789abcdef"
PROVIDERS = ["ollama", "openai"]


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with open_session(4) as session:
        yield session


def client_for(
    provider: str, fake: FakeLLM, session: aiohttp.ClientSession, timeout_s: float = 5.0
) -> ChatClient:
    return make_client(provider, session, fake.url, api_key=KEY, timeout_s=timeout_s)


def ask(prompt: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(
        model="llama3.2",
        messages=[{"role": "user", "content": prompt}],
        **kwargs,  # type: ignore[arg-type]
    )


async def no_sleep(_: float) -> None:
    return None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_chat_returns_content_and_usage_tokens(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Content, tokens from the provider's usage fields (not from string lengths), the model."""
    fake_llm.tokens = lambda _prompt, _content: (123, 45)
    result = await client_for(provider, fake_llm, session).chat(ask("Write a tagline"))
    assert result.content.endswith("to: Write a tagline")
    assert (result.tokens_in, result.tokens_out) == (123, 45)
    assert result.model == "llama3.2"
    assert result.finish_reason == "stop"
    assert result.latency_s >= 0
    assert fake_llm.calls["Write a tagline"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_absent_usage_counts_zero_tokens(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """A provider that omits usage (Ollama with a cached prompt, some OpenAI-compatible
    servers) gives 0 tokens, not an estimate."""
    fake_llm.tokens = None
    result = await client_for(provider, fake_llm, session).chat(ask("hello"))
    assert (result.tokens_in, result.tokens_out) == (0, 0)


async def test_ollama_request_carries_parameters_in_options(
    fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Temperature, max tokens (num_predict), seed and extra options such as num_ctx go into
    Ollama's `options`; JSON output asks for `format: json`; no streaming."""
    request = ask(
        "outline",
        temperature=0.2,
        max_tokens=256,
        seed=7,
        options={"num_ctx": 8192},
        json_output=True,
    )
    result = await OllamaClient(session, fake_llm.url).chat(request)
    assert json.loads(result.content)["prompt"] == "outline"
    body = fake_llm.last_request
    assert body["options"] == {"temperature": 0.2, "num_predict": 256, "seed": 7, "num_ctx": 8192}
    assert body["format"] == "json"
    assert body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": "outline"}]


async def test_openai_request_carries_parameters_and_bearer_key(
    fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """OpenAI-compatible body: temperature, max_tokens, seed, response_format for JSON, extra
    options merged at the top level; the key is accepted (the fake checks the Bearer header);
    a base URL ending in /v1 works too."""
    fake_llm.api_key = KEY
    request = ask(
        "outline", temperature=0.5, max_tokens=64, seed=1, options={"top_p": 0.9}, json_output=True
    )
    client = OpenAIClient(session, fake_llm.url + "/v1", api_key=KEY)
    result = await client.chat(request)
    assert json.loads(result.content)["prompt"] == "outline"
    body = fake_llm.last_request
    assert {k: body[k] for k in ("temperature", "max_tokens", "seed", "top_p")} == {
        "temperature": 0.5,
        "max_tokens": 64,
        "seed": 1,
        "top_p": 0.9,
    }
    assert body["response_format"] == {"type": "json_object"}
    assert KEY not in repr(client)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retry_then_success(
    provider: str, status: int, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Two transient failures, then an answer: three calls in all, the answer returned."""
    fake_llm.fail("status", status=status, first=2)
    client = client_for(provider, fake_llm, session)
    result = await with_retries(lambda: client.chat(ask("p")), attempts=3, base_s=0.001)
    assert result.content.endswith("to: p")
    assert fake_llm.calls["p"] == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_transient_errors_exhaust_the_attempts(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Still failing after 3 attempts: the last TransientError, with the provider's message."""
    fake_llm.fail("status", status=503, first=None, message="model is loading")
    client = client_for(provider, fake_llm, session)
    with pytest.raises(TransientError) as caught:
        await with_retries(lambda: client.chat(ask("p")), attempts=3, sleep=no_sleep)
    assert caught.value.status == 503
    assert caught.value.reason == "HTTP 503: model is loading"
    assert fake_llm.calls["p"] == 3


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "invalid key"), (403, "forbidden"), (400, "context length exceeded")],
)
async def test_permanent_error_fails_at_once(
    provider: str, status: int, message: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """401/403/400 are not retried: one call, the provider's message as the reason."""
    fake_llm.fail("status", status=status, first=None, message=message)
    client = client_for(provider, fake_llm, session)
    with pytest.raises(PermanentError) as caught:
        await with_retries(lambda: client.chat(ask("p")), sleep=no_sleep)
    assert caught.value.status == status
    assert caught.value.reason == f"HTTP {status}: {message}"
    assert fake_llm.calls["p"] == 1


@pytest.mark.parametrize(
    ("provider", "reason"),
    [
        ("ollama", 'HTTP 404: model "llama3.2" not found, try pulling it first'),
        ("openai", "HTTP 404: The model `llama3.2` does not exist"),
    ],
)
async def test_unknown_model_is_permanent(
    provider: str, reason: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Model not found (404) fails at once with the provider's words."""
    fake_llm.models = {"qwen2.5"}
    client = client_for(provider, fake_llm, session)
    with pytest.raises(PermanentError) as caught:
        await with_retries(lambda: client.chat(ask("p")), sleep=no_sleep)
    assert caught.value.reason == reason
    assert fake_llm.calls["p"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retry_after_is_carried(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """A 429's Retry-After reaches the error and lengthens the backoff."""
    fake_llm.fail("status", status=429, first=1, retry_after="2", message="slow down")
    client = client_for(provider, fake_llm, session)
    with pytest.raises(TransientError) as caught:
        await client.chat(ask("p"))
    assert caught.value.retry_after_s == 2.0
    assert caught.value.overload
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    fake_llm.failures.clear()
    fake_llm.fail("status", status=429, first=2, retry_after="2")
    await with_retries(lambda: client.chat(ask("q")), base_s=0.001, sleep=record)
    assert slept == [2.0, 2.0]
    assert fake_llm.calls["q"] == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeout_is_transient(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """No answer within the client's timeout: transient, and retried (second call answers)."""
    fake_llm.fail("timeout", first=1)
    client = client_for(provider, fake_llm, session, timeout_s=0.3)
    with pytest.raises(TransientError, match=r"no answer within 0.3s"):
        await client.chat(ask("p"))
    result = await with_retries(lambda: client.chat(ask("p")), sleep=no_sleep)
    assert result.content.endswith("to: p")
    assert fake_llm.calls["p"] == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_dropped_connection_is_transient(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """The server closing the connection mid-request is a transient connection error."""
    fake_llm.fail("drop", first=1)
    client = client_for(provider, fake_llm, session)
    with pytest.raises(TransientError, match="connection error"):
        await client.chat(ask("p"))
    assert (await client.chat(ask("p"))).content.endswith("to: p")


async def test_refused_connection_is_transient(session: aiohttp.ClientSession) -> None:
    """Nothing listening: transient (the server may be restarting)."""
    from launchdeck.devservers import free_port

    client = OllamaClient(session, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="connection error"):
        await client.chat(ask("p"))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_invalid_json_output_is_transient(
    provider: str, fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """JSON asked, not-JSON answered: transient (a new sample may be valid); retried."""
    fake_llm.fail("invalid_json", first=1)
    client = client_for(provider, fake_llm, session)
    result = await with_retries(lambda: client.chat(ask("p", json_output=True)), sleep=no_sleep)
    assert json.loads(result.content)["prompt"] == "p"
    assert fake_llm.calls["p"] == 2


async def test_text_output_is_not_checked_as_json(
    fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """Without JSON output, any text is a valid answer."""
    fake_llm.fail("invalid_json", first=1)
    result = await OllamaClient(session, fake_llm.url).chat(ask("p"))
    assert result.content == "this is {not json"


async def test_api_key_never_in_error_text_or_logs(
    fake_llm: FakeLLM, session: aiohttp.ClientSession
) -> None:
    """A refused key (which the server echoes back) and a failing server: the key appears in
    no exception text, repr, cause or log line."""
    fake_llm.api_key = "sk-the-right-one"
    client = OpenAIClient(session, fake_llm.url, api_key=KEY)
    with capture_logs() as logs, pytest.raises(PermanentError) as refused:
        await with_retries(lambda: client.chat(ask("p")), sleep=no_sleep)
    assert refused.value.status == 401
    assert "Incorrect API key provided: [redacted]" in refused.value.reason

    fake_llm.api_key = KEY
    fake_llm.fail("status", status=500, first=None, message=f"upstream said {KEY}")
    with capture_logs() as more_logs, pytest.raises(TransientError) as failed:
        await with_retries(lambda: client.chat(ask("p")), sleep=no_sleep)
    assert len(more_logs) == 2  # two retries logged
    for error in (refused.value, failed.value):
        assert error.__cause__ is None
        assert KEY not in str(error)
        assert KEY not in repr(error)
    assert KEY not in repr(logs + more_logs)


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        make_client("anthropic", None, "http://x")  # type: ignore[arg-type]


def test_retry_after_header_forms() -> None:
    """Seconds, milliseconds (OpenAI's retry-after-ms) and HTTP dates; junk is ignored."""
    now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after-ms": "1500", "Retry-After": "7"}) == 1.5
    assert retry_after({"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"}, now=now) == 30.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


def test_error_reason_is_the_providers_message_trimmed() -> None:
    """Ollama's and OpenAI's error shapes give their message; an HTML page is flattened and
    trimmed so a reason stays one readable line."""
    assert error_message('{"error": "model not found"}') == "model not found"
    assert error_message('{"error": {"message": "bad key", "type": "x"}}') == "bad key"
    page = "<html>\n<body>" + "x" * 1000 + "</body></html>"
    reason = trim(error_message(page))
    assert len(reason) == 300
    assert "\n" not in reason
    assert redact("key sk-1 here", "sk-1") == "key [redacted] here"
