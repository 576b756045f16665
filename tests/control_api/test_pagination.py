"""Keyset cursors and `?limit=`: what a client sends back decodes to the key it came from, and
anything else — tampered, foreign, out of range — is a 422 on `cursor`, never a 500."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiohttp.test_utils import make_mocked_request

from launchdeck.control_api.api.pagination import (
    MAX_LIMIT,
    decode_int_cursor,
    decode_str_cursor,
    decode_time_id_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.domain.errors import Invalid


def raw_cursor(values: object) -> str:
    """A cursor as a client could forge one: base64url of any JSON."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_cursors_round_trip() -> None:
    """Each kind of sort key comes back as it went in (UUIDs and timestamps typed)."""
    at = datetime(2026, 11, 29, 23, 59, 1, 123456, tzinfo=UTC)
    row = uuid.uuid4()
    assert decode_str_cursor(encode_cursor("my-project")) == "my-project"
    assert decode_int_cursor(encode_cursor(42)) == 42
    assert decode_time_id_cursor(encode_cursor(at, row)) == (at, row)
    assert "=" not in encode_cursor("x")  # URL-safe, unpadded


def test_a_shifted_timezone_comes_back_in_utc() -> None:
    at = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    when, _ = decode_time_id_cursor(encode_cursor(at, uuid.uuid4()))
    assert when == at
    assert when.tzinfo == UTC


@pytest.mark.parametrize(
    ("decode", "cursor"),
    [
        (decode_str_cursor, "%%%not-base64"),
        (decode_str_cursor, raw_cursor({"name": "x"})),
        (decode_str_cursor, raw_cursor([1])),
        (decode_str_cursor, raw_cursor(["a", "b"])),
        (decode_str_cursor, raw_cursor(["nul\x00name"])),
        (decode_int_cursor, raw_cursor(["7"])),
        (decode_int_cursor, raw_cursor([True])),
        (decode_int_cursor, raw_cursor([99999999999])),
        (decode_int_cursor, raw_cursor([-1])),
        (decode_time_id_cursor, raw_cursor(["2026-01-01T00:00:00", str(uuid.uuid4())])),
        (decode_time_id_cursor, raw_cursor(["0001-01-01T00:00:00+05:00", str(uuid.uuid4())])),
        (decode_time_id_cursor, raw_cursor(["9999-12-31T23:59:59-05:00", str(uuid.uuid4())])),
        (decode_time_id_cursor, raw_cursor(["yesterday", str(uuid.uuid4())])),
        (decode_time_id_cursor, raw_cursor(["2026-01-01T00:00:00Z", "not-a-uuid"])),
        (decode_time_id_cursor, raw_cursor(["2026-01-01T00:00:00Z"])),
    ],
)
def test_foreign_cursors_are_invalid_on_the_cursor_field(decode: object, cursor: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode(cursor)  # type: ignore[operator]
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("cursor", "is not a cursor returned by this list")
    ]
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("query", "limit", "cursor"),
    [("", 50, None), ("?limit=1", 1, None), (f"?limit={MAX_LIMIT}&cursor=abc", MAX_LIMIT, "abc")],
)
def test_page_request_reads_limit_and_cursor(query: str, limit: int, cursor: str | None) -> None:
    page = page_request(make_mocked_request("GET", f"/api/v1/projects{query}"))
    assert (page.limit, page.cursor) == (limit, cursor)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", f"must be between 1 and {MAX_LIMIT}"),
        (str(MAX_LIMIT + 1), f"must be between 1 and {MAX_LIMIT}"),
        ("ten", "must be an integer"),
    ],
)
def test_bad_limits_name_the_parameter(raw: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        page_request(make_mocked_request("GET", f"/api/v1/projects?limit={raw}"))
    assert [(e.field, e.message) for e in caught.value.errors] == [("limit", message)]


def test_paginate_uses_the_extra_row_only_to_say_there_is_more() -> None:
    rows = [1, 2, 3]
    page = paginate(rows, 2, lambda n: encode_cursor(n), lambda n: n * 10)
    assert page.items == [10, 20]
    assert page.next_cursor is not None
    assert decode_int_cursor(page.next_cursor) == 2
    last = paginate(rows, 3, lambda n: encode_cursor(n), lambda n: n)
    assert (last.items, last.next_cursor) == ([1, 2, 3], None)
    assert paginate([], 5, lambda n: encode_cursor(n), lambda n: n).next_cursor is None
