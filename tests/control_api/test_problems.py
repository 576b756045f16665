"""problem+json field errors: msgspec's validation messages turned into `{field, message}`.

`field_error` parses msgspec's message text, so these pin the formats it relies on: a msgspec
upgrade that rewords them fails here, not silently in front of users.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from launchdeck.contracts.api import BuildCreate, ProjectCreate, ProjectUpdate
from launchdeck.control_api.api.problems import field_error, invalid_from, problem_response


def error_of(body: dict[str, Any], type_: type[Any]) -> tuple[str, str]:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(json.dumps(body), type=type_)
    error = field_error(caught.value)
    return error.field, error.message


def test_missing_field() -> None:
    assert error_of({"name": "a"}, ProjectCreate) == ("repo_url", "is required")


def test_unknown_field_is_named() -> None:
    body = {"name": "a", "repo_url": "r", "deplyo": False}
    assert error_of(body, ProjectCreate) == ("deplyo", "is not a known field")


def test_nested_unknown_field_has_its_path() -> None:
    body = {"name": "a", "repo_url": "r", "build": {"timeout": 5}}
    assert error_of(body, ProjectCreate) == ("build.timeout", "is not a known field")


def test_nested_constraint_has_its_path_and_msgspec_reason() -> None:
    body = {"name": "a", "repo_url": "r", "build": {"timeout_s": 0}}
    assert error_of(body, ProjectCreate) == ("build.timeout_s", "Expected `int` >= 1")


def test_wrong_type() -> None:
    assert error_of({"deploy": "yes"}, BuildCreate) == ("deploy", "Expected `bool`, got `str`")


def test_pattern_errors_get_a_readable_hint_with_the_index() -> None:
    field, message = error_of({"domains": ["ok.example", "Not A Host"]}, ProjectUpdate)
    assert field == "domains[1]"
    assert message == "must be a lowercase host name such as www.example.com"
    field, message = error_of({"name": "Bad Name", "repo_url": "r"}, ProjectCreate)
    assert field == "name"
    assert message.startswith("must be a slug")
    assert error_of({"ref": "-x"}, BuildCreate)[1].startswith("must be a git branch, tag")


def test_top_level_type_error_is_on_the_body() -> None:
    assert error_of([1], BuildCreate) == ("body", "Expected `object`, got `array`")  # type: ignore[arg-type]


def test_invalid_carries_one_error_and_a_detail_naming_it() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(b'{"name": "a"}', type=ProjectCreate)
    invalid = invalid_from(caught.value)
    assert invalid.status == 422
    assert invalid.detail == "repo_url: is required"
    assert [(e.field, e.message) for e in invalid.errors] == [("repo_url", "is required")]


def test_problem_document_shape() -> None:
    """RFC 9457: the media type, and only the members that have a value (no `type` member
    means `about:blank`)."""
    response = problem_response(404, "Not Found", "no project 'x'")
    assert response.content_type == "application/problem+json"
    assert response.body is not None
    assert json.loads(bytes(response.body)) == {  # type: ignore[arg-type]
        "title": "Not Found",
        "status": 404,
        "detail": "no project 'x'",
    }
