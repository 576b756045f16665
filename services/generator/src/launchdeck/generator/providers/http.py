"""The HTTP part shared by both providers: one session, one POST, errors classified.

Exceptions are raised `from None`: aiohttp's own exceptions may carry the request's headers
(and so the API key) in `request_info`, and a logged traceback would print them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from launchdeck.generator.providers.errors import PermanentError, TransientError

REASON_MAX_CHARS = 300
DEFAULT_TIMEOUT_S = 120.0


def open_session(concurrency: int) -> aiohttp.ClientSession:
    """One session per job run, shared by all its calls: the pool holds `concurrency`
    connections (the limiter never allows more calls than that), kept alive between calls."""
    connector = aiohttp.TCPConnector(limit=max(1, concurrency), limit_per_host=max(1, concurrency))
    return aiohttp.ClientSession(connector=connector)


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def trim(text: str, limit: int = REASON_MAX_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or `retry-after-ms`."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_message(body: str) -> str:
    """The provider's own message: Ollama's `{"error": "..."}`, OpenAI's
    `{"error": {"message": "..."}}`, else the body itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):
            error = error.get("message", error)
        if isinstance(error, str):
            return error
        if error is not None:
            return json.dumps(error)
    return body


@dataclass(frozen=True)
class JsonAnswer:
    body: dict[str, Any]
    latency_s: float


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    *,
    timeout_s: float,
    headers: dict[str, str] | None = None,
    secret: str | None = None,
) -> JsonAnswer:
    """POST `payload`, return the JSON object answered with a 2xx, or raise a classified error
    (`secret` is redacted from every reason)."""
    started = time.monotonic()
    try:
        async with session.post(
            url,
            json=payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            text = await response.text()
            status = response.status
            delay = retry_after(response.headers)
    except TimeoutError:
        raise TransientError(f"no answer within {timeout_s:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        detail = redact(trim(str(exc)), secret)
        raise TransientError(f"connection error: {type(exc).__name__}: {detail}") from None
    latency = time.monotonic() - started
    if status >= 400:
        reason = redact(trim(f"HTTP {status}: {error_message(text)}"), secret)
        if status in (408, 425, 429) or status >= 500:
            raise TransientError(reason, status=status, retry_after_s=delay)
        raise PermanentError(reason, status=status)
    try:
        body = json.loads(text)
    except ValueError:
        raise TransientError(
            redact(trim(f"answer is not JSON: {text}"), secret), status=status
        ) from None
    if not isinstance(body, dict):
        raise TransientError(redact(trim(f"answer is not an object: {text}"), secret))
    return JsonAnswer(body, latency)


def token_count(value: Any) -> int:
    """A usage field as an int, 0 when absent or not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def check_json_content(content: str, secret: str | None) -> None:
    try:
        json.loads(content)
    except ValueError:
        raise TransientError(
            redact(trim(f"invalid JSON in the model's output: {content}"), secret)
        ) from None
