"""No input is a 500: property-based (hypothesis) requests through the real app and Postgres.

Every request type of `contracts.api` gets bodies whose fields hold anything JSON can carry —
text with NUL and other control characters, huge numbers, wrong types, nesting — as well as
arbitrary JSON documents; list endpoints get forged cursors (any JSON array, timestamps at the
calendar's edges, integers past every column's range) and limits; path segments and the log
endpoints' sequence numbers get arbitrary text and integers; the multiplexed WebSocket gets
arbitrary client messages. Whatever is sent, the answer is a 2xx or a 4xx problem (a control
character in a text field is a 422 naming the field), and the WebSocket answers every message
with a frame and stays open — never a 500, never an "internal error".

Examples per test are bounded (`EXAMPLES`) so the suite stays fast; no example database is
kept, so every run explores afresh. A failure is reported with the example as generated, not
shrunk: every 500 logs a full traceback, which makes shrinking take minutes, and the assertion
already shows the request and the answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from launchdeck.contracts.api import (
    BuildCreate,
    BuildSettings,
    DeploymentCreate,
    EnvVarSet,
    ProjectCreate,
    ProjectUpdate,
    Redeploy,
)
from launchdeck.control_api.api.json_io import MAX_BODY_BYTES, decode_body
from launchdeck.control_api.api.openapi import ROUTES, RouteDoc
from launchdeck.control_api.domain.errors import DomainError
from tests.control_api.support import Api, unique

EXAMPLES = 120
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONTROL = "\x00\x01\x07\t\n\r\x1b\x7f\x85\x9f"

# Text that is mostly harmless, with control characters, path and shell characters mixed in.
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(f"{CONTROL}abc-./~^:?*[\\ é0"),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)


# A valid value of each field of the request types (and of the build overrides).
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": st.uuids().map(lambda u: f"fz-{u.hex[:12]}"),
    "repo_url": st.just("https://git.example.invalid/r.git"),
    "branch": st.sampled_from(["main", "release/1", "v1.2"]),
    "ref": st.sampled_from(["main", "topic", "abc123"]),
    "deploy": st.booleans(),
    "build_tags": st.booleans(),
    "environment": st.sampled_from(["production", "preview"]),
    "domains": st.lists(st.uuids().map(lambda u: f"{u.hex[:10]}.example.com"), max_size=2),
    "build_id": st.uuids().map(str),
    "root_dir": st.sampled_from(["web", "apps/site"]),
    "output_dir": st.sampled_from(["dist", "public"]),
    "install_command": st.just("npm ci"),
    "build_command": st.just("npm run build"),
    "start_command": st.just("node server.js"),
    "health_path": st.just("/healthz"),
    "timeout_s": st.integers(1, 3600),
    "dockerfile": st.sampled_from(["Dockerfile", "docker/Dockerfile.web"]),
    "build_args": st.lists(st.sampled_from(["NODE_ENV", "API_URL"]), max_size=2),
    "resources": st.fixed_dictionaries(
        {},
        optional={
            "memory_mb": st.integers(16, 4096),
            "cpus": st.floats(0.1, 8, allow_nan=False, allow_infinity=False),
        },
    ),
    "value": st.text(max_size=30),
    "targets": st.lists(
        st.sampled_from(["build", "preview", "production"]), min_size=1, max_size=3
    ),
}
BUILD_FIELDS = list(BuildSettings.__struct_fields__)
PLAUSIBLE["build"] = st.fixed_dictionaries({}, optional={f: PLAUSIBLE[f] for f in BUILD_FIELDS})


@dataclass(frozen=True)
class Sent:
    """A request body, and the field that must be named in a 422 when a control character was
    put into it (None: anything but a 500 will do)."""

    body: Any
    refused_field: str | None = None


def splice(value: Any, control: str, at: int) -> Any:
    """`value` with a control character put into its text (the first item's, for a list)."""
    if isinstance(value, str):
        return value[:at] + control + value[at:]
    if isinstance(value, list) and value:
        return [splice(value[0], control, at), *value[1:]]
    return value


# NUL most often: PostgreSQL refuses it in text and jsonb (the other characters it stores).
controls = st.one_of(st.just("\x00"), st.sampled_from(CONTROL))


def bodies(type_: type[msgspec.Struct]) -> st.SearchStrategy[Sent]:
    """Bodies for a request type: a valid body with one field (or one build override, or a
    field the type does not have) given a control character or any JSON value, a valid body, or
    any JSON document at all."""
    fields = list(type_.__struct_fields__)
    required = fields[: len(fields) - len(type_.__struct_defaults__)]
    valid = st.fixed_dictionaries(
        {f: PLAUSIBLE[f] for f in required},
        optional={f: PLAUSIBLE[f] for f in fields if f not in required},
    )
    targets = [*fields, "unknown"] + (
        ["build." + f for f in BUILD_FIELDS] if "build" in fields else []
    )

    def with_bad(body: dict[str, Any], target: str, value: Any) -> dict[str, Any]:
        body = dict(body)
        if target.startswith("build."):
            body["build"] = {**body.get("build", {}), target.removeprefix("build."): value}
        else:
            body[target] = value
        return body

    def spliced_into(target: str) -> st.SearchStrategy[Sent]:
        def make(body: dict[str, Any], good: Any, control: str, at: int) -> Sent:
            bad = splice(good, control, at)
            field = f"{target}[0]" if isinstance(bad, list) else target
            return Sent(with_bad(body, target, bad), field if bad != good else None)

        good = PLAUSIBLE.get(target.removeprefix("build."), st.just("x"))
        return st.builds(make, valid, good, controls, st.integers(0, 6))

    def anything_in(target: str) -> st.SearchStrategy[Sent]:
        return st.builds(lambda b, v: Sent(with_bad(b, target, v)), valid, json_values)

    chosen = st.sampled_from(targets)
    return st.one_of(
        chosen.flatmap(spliced_into),
        chosen.flatmap(anything_in),
        valid.map(Sent),
        json_values.map(Sent),
    )


def forged_cursor() -> st.SearchStrategy[str]:
    """What a client could send as `?cursor=`: base64url of any JSON array, in particular sort
    keys of the right shape with out-of-range values, or plain text."""
    offsets = st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23))
    edge_times = st.builds(
        lambda when, offset: when.replace(tzinfo=timezone(offset)).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        offsets,
    )
    keys = st.one_of(
        st.lists(json_values, max_size=3),
        st.tuples(st.integers(min_value=-(2**80), max_value=2**80)).map(list),
        st.tuples(edge_times, st.uuids().map(str)).map(list),
        st.tuples(hostile_text).map(list),
    )
    encoded = keys.map(
        lambda key: base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")
    )
    return st.one_of(encoded, hostile_text)


class Target:
    """An existing project with one build, so project and build routes get past "not found"."""

    def __init__(self, project: dict[str, Any], build: dict[str, Any]) -> None:
        self.name: str = project["name"]
        self.build_id: str = build["id"]
        self.webhook_secret: str = project["webhook_secret"]


@pytest_asyncio.fixture(loop_scope="session")
async def target(api: Api) -> Target:
    project = await api.create_project(unique("fuzz"))
    reply = await api.call("POST", f"/api/v1/projects/{project['name']}/builds", {"deploy": False})
    assert reply.status == 202, reply.body
    return Target(project, reply.body)


def assert_no_server_error(reply: Any, sent: Any) -> None:
    assert reply.status < 500, (sent, reply.status, reply.body)
    if reply.status >= 400:
        assert reply.content_type.startswith("application/problem+json"), reply.body


async def send(api: Api, method: str, path: str, sent: Sent) -> None:
    """Send the body; no 500, and a 422 naming the field a control character was put into."""
    reply = await api.call(
        method,
        path,
        data=json.dumps(sent.body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_no_server_error(reply, sent.body)
    if sent.refused_field is not None:
        assert reply.status == 422, (sent, reply.body)
        assert [e["field"] for e in reply.body["errors"]] == [sent.refused_field], reply.body


@FUZZ
@given(sent=bodies(ProjectCreate))
async def test_project_create(api: Api, sent: Sent) -> None:
    await send(api, "POST", "/api/v1/projects", sent)


@FUZZ
@given(sent=bodies(ProjectUpdate))
async def test_project_update(api: Api, target: Target, sent: Sent) -> None:
    await send(api, "PATCH", f"/api/v1/projects/{target.name}", sent)


@FUZZ
@given(sent=bodies(BuildCreate))
async def test_build_create(api: Api, target: Target, sent: Sent) -> None:
    await send(api, "POST", f"/api/v1/projects/{target.name}/builds", sent)


@FUZZ
@given(sent=bodies(DeploymentCreate))
async def test_deployment_create(api: Api, target: Target, sent: Sent) -> None:
    await send(api, "POST", f"/api/v1/projects/{target.name}/deployments", sent)


@FUZZ
@given(sent=bodies(EnvVarSet), key=st.one_of(st.sampled_from(["API_TOKEN", "K_1"]), hostile_text))
async def test_env_set(api: Api, target: Target, sent: Sent, key: str) -> None:
    """Env var values may hold any character but NUL (a PEM key has newlines), so of them only
    "no 500" is asked; names come through the path, any text."""
    path = f"/api/v1/projects/{target.name}/env/{quote(key, safe='')}"
    for method in ("PUT", "DELETE"):
        reply = await api.call(
            method,
            path,
            data=json.dumps(sent.body).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert_no_server_error(reply, (method, key, sent.body))


@FUZZ
@given(sent=bodies(Redeploy))
async def test_redeploy(api: Api, target: Target, sent: Sent) -> None:
    await send(api, "POST", f"/api/v1/projects/{target.name}/redeploy", sent)


@FUZZ
@given(
    which=st.sampled_from(["projects", "builds", "deployments", "env"]),
    cursor=forged_cursor(),
    limit=st.one_of(st.none(), hostile_text, st.integers(-(2**70), 2**70).map(str)),
)
async def test_list_cursors_and_limits(
    api: Api, target: Target, which: str, cursor: str, limit: str | None
) -> None:
    path = "/api/v1/projects" if which == "projects" else f"/api/v1/projects/{target.name}/{which}"
    params = {"cursor": cursor, **({"limit": limit} if limit is not None else {})}
    reply = await api.call("GET", path, params=params)
    assert_no_server_error(reply, params)


@FUZZ
@given(
    segment=hostile_text.filter(lambda s: s not in ("", ".", "..")),
    route=st.sampled_from(
        [
            "/api/v1/projects/{}",
            "/api/v1/projects/{}/builds",
            "/api/v1/builds/{}",
            "/api/v1/deployments/{}",
            "/api/v1/builds/{}/logs",
        ]
    ),
)
async def test_path_segments(api: Api, segment: str, route: str) -> None:
    """Ids and names in the path, whatever their characters (a name with NUL included)."""
    path = route.format(quote(segment, safe=""))
    reply = await api.call("GET", path)
    assert_no_server_error(reply, path)


@FUZZ
@given(
    seq=st.one_of(hostile_text, st.integers(-(2**80), 2**80).map(str)),
    param=st.sampled_from(["after_seq", "from_seq"]),
)
async def test_log_sequence_numbers(api: Api, target: Target, seq: str, param: str) -> None:
    path = f"/api/v1/builds/{target.build_id}/logs"
    reply = await api.call("GET", path, params={param: seq})
    assert_no_server_error(reply, seq)


def client_messages(target: Target) -> st.SearchStrategy[str]:
    """Text a WebSocket client could send: subscribe/unsubscribe with any channel and from_seq
    (existing build and project among them), any JSON, or not JSON at all."""
    channels = st.one_of(
        hostile_text,
        st.sampled_from(
            [
                f"build:{target.build_id}:logs",
                f"project:{target.name}:events",
                f"generation:{uuid.uuid4()}",
            ]
        ),
        st.builds(lambda kind, name: f"{kind}:{name}:events", st.just("project"), hostile_text),
        st.builds(lambda name: f"build:{name}:logs", hostile_text),
    )
    message = st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe"]), "channel": channels},
        optional={"from_seq": st.one_of(st.integers(-(2**70), 2**70), json_values)},
    )
    return st.one_of(message.map(json.dumps), json_values.map(json.dumps), hostile_text)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
async def test_websocket_client_messages(api: Api, target: Target, data: st.DataObject) -> None:
    """Each message gets a frame (subscribed, unsubscribed or a readable error) on a socket that
    stays open; none is an internal error."""
    messages = data.draw(st.lists(client_messages(target), min_size=1, max_size=4))
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.client.ws_connect("/api/v1/ws", headers=headers) as ws:
        for text in messages:
            await ws.send_str(text)
            frame = await next_control_frame(ws)
            assert frame["type"] in ("subscribed", "unsubscribed", "error"), (text, frame)
            assert "internal error" not in frame.get("message", ""), (text, frame)
        assert not ws.closed


async def next_control_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next frame that answers a request (log lines and ends of a subscribed build's log
    may come in between)."""
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame: dict[str, Any] = json.loads(msg.data)
        if frame["type"] not in ("log", "end", "event"):
            return frame


async def test_a_control_character_in_any_text_field_is_a_422_naming_it(
    api: Api, target: Target
) -> None:
    """Not just "no 500": each text field of each request type refuses NUL, a newline and DEL
    with a 422 whose error names that field and says why in words."""
    name = unique("ctl")
    cases: list[tuple[str, str, dict[str, Any], str]] = []
    for control in ("\x00", "\n", "\x7f"):
        create = {"name": name, "repo_url": "https://git.example.invalid/r.git"}
        cases += [
            ("POST", "/api/v1/projects", {**create, "name": f"{name}{control}"}, "name"),
            ("POST", "/api/v1/projects", {**create, "repo_url": f"https://x{control}"}, "repo_url"),
            ("POST", "/api/v1/projects", {**create, "branch": f"ma{control}in"}, "branch"),
            ("POST", "/api/v1/projects", {**create, "domains": [f"a.dev{control}"]}, "domains[0]"),
        ]
        for field, value in [
            ("install_command", f"npm ci{control}"),
            ("build_command", f"npm run{control} build"),
            ("start_command", f"{control}node ."),
            ("root_dir", f"web{control}"),
            ("output_dir", f"dist{control}"),
            ("health_path", f"/health{control}"),
        ]:
            cases.append(
                (
                    "PATCH",
                    f"/api/v1/projects/{target.name}",
                    {"build": {field: value}},
                    f"build.{field}",
                )
            )
        cases.append(
            ("POST", f"/api/v1/projects/{target.name}/builds", {"ref": f"topic{control}"}, "ref")
        )
    for method, path, body, field in cases:
        reply = await api.call(method, path, body)
        assert reply.status == 422, (body, reply.body)
        [error] = reply.body["errors"]
        assert error["field"] == field, (body, error)
        assert "regex" not in error["message"]
        readable = ("control characters", "must be a slug", "must be a lowercase host name")
        assert any(words in error["message"] for words in readable), error


async def test_a_project_name_with_nul_is_not_found(api: Api) -> None:
    """A NUL cannot even reach PostgreSQL in a path segment: 404 like any unknown project."""
    reply = await api.call("GET", "/api/v1/projects/a%00b")
    assert reply.status == 404, reply.body


async def test_a_nul_in_a_websocket_channel_is_a_readable_error(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.client.ws_connect("/api/v1/ws", headers=headers) as ws:
        for channel in ("project:a\x00b:events", "project:ab:events\n"):
            await ws.send_str(json.dumps({"type": "subscribe", "channel": channel}))
            frame = await next_control_frame(ws)
            assert frame["type"] == "error"
            assert frame["message"] == (
                "invalid message: channel: must not contain control characters "
                "(NUL, tab, newline, …)"
            )
        await ws.send_str(json.dumps({"type": "subscribe", "channel": "project:a\u00e9:events"}))
        frame = await next_control_frame(ws)
        assert (frame["type"], frame["message"]) == ("error", "no project 'aé'")


# --- raw bodies: bytes that are not UTF-8, not JSON, nested too deeply, or too large ---------

# Byte sequences UTF-8 forbids: a lone continuation or 0xFF, a truncated sequence, an overlong
# encoding, an encoded surrogate, a code point past U+10FFFF.
BAD_UTF8 = [
    b"\xff",
    b"\x80",
    b"\xc3\x28",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
]


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda bad, field: b'{"' + field.encode() + b'": "x' + bad + b'y"}',
        st.sampled_from(BAD_UTF8),
        st.sampled_from(["name", "repo_url", "ref", "value", "build_id", "environment"]),
    ),
    st.builds(lambda bad: b'{"na' + bad + b'me": 1}', st.sampled_from(BAD_UTF8)),
    st.builds(nested, st.integers(1, 50_000), st.sampled_from(["array", "object"])),
    st.sampled_from(
        [b"\xef\xbb\xbf{}", b"{}\x00", b'{"a": NaN}', b'{"a": 1e999}', b"\x00" * 8, b"{" * 3]
    ),
)


def write_routes() -> list[RouteDoc]:
    """Every route that takes a body (by the API's description, so new routes are included)."""
    return [r for r in ROUTES if r.method in ("POST", "PUT", "PATCH") and not r.websocket]


def fill(path: str, target: Target) -> str:
    """`path` with its parameters set to the target's project and build where they fit (a
    project's own routes, its hooks), an env var name, else an unknown id."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if not segment.startswith("{"):
            continue
        before = segments[i - 1]
        if segment == "{key}":
            segments[i] = "API_TOKEN"
        elif before == "projects" or "hooks" in segments:
            segments[i] = target.name
        elif before == "builds":
            segments[i] = target.build_id
        else:
            segments[i] = str(uuid.uuid4())
    return "/".join(segments)


@FUZZ
@given(route=st.sampled_from(write_routes()), body=raw_bodies)
async def test_raw_bodies_on_every_write_route(
    api: Api, target: Target, route: RouteDoc, body: bytes
) -> None:
    """Whatever bytes arrive, the answer is a 2xx or a 4xx problem, never a 500."""
    path = fill(route.path, target)
    reply = await api.call(
        route.method, path, data=body, headers={"Content-Type": "application/json"}
    )
    assert_no_server_error(reply, (route.method, path, body[:100]))


async def test_bytes_that_are_not_utf8_are_a_400_problem(api: Api) -> None:
    for bad in BAD_UTF8:
        body = b'{"name": "a' + bad + b'", "repo_url": "https://x.invalid/r"}'
        reply = await api.call(
            "POST", "/api/v1/projects", data=body, headers={"Content-Type": "application/json"}
        )
        assert reply.status == 400, (bad, reply.body)
        assert reply.content_type.startswith("application/problem+json")
        assert reply.body["detail"] in ("the body is not valid UTF-8",) or reply.body[
            "detail"
        ].startswith("malformed JSON"), (bad, reply.body)


async def test_json_nested_too_deeply_is_a_4xx_problem(api: Api, target: Target) -> None:
    """The typed decoder refuses what does not fit before descending (422); where it does
    descend — into a value it skips or keeps as any JSON — past its depth limit it is a 400."""
    for kind in ("array", "object"):
        reply = await api.call(
            "PATCH",
            f"/api/v1/projects/{target.name}",
            data=nested(100_000, kind),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status in (400, 422), reply.body
        assert reply.content_type.startswith("application/problem+json")
    for type_ in (object, dict[str, Any], msgspec.Struct):
        body = b'{"skipped": ' + nested(100_000, "array") + b"}"
        with pytest.raises(DomainError) as caught:
            decode_body(body, type_)
        assert caught.value.status == 400
        assert caught.value.detail == "malformed JSON: nested too deeply"


async def test_a_body_past_the_limit_is_a_413_problem(api: Api, target: Target) -> None:
    """On every route that reads a JSON body: 413 problem+json saying the limit."""
    big = b'{"value": "' + b"a" * MAX_BODY_BYTES + b'"}'
    for route in write_routes():
        if route.body is None:
            continue
        path = fill(route.path, target)
        reply = await api.call(
            route.method, path, data=big, headers={"Content-Type": "application/json"}
        )
        if "{" in route.path and not any(v in path for v in (target.name, target.build_id)):
            # A resource the target has none of (a schedule, a token): 404 before reading.
            assert reply.status == 404, (route.path, reply.status, reply.body)
            continue
        assert reply.status == 413, (route.path, reply.status, reply.body)
        assert reply.content_type.startswith("application/problem+json")
        assert str(MAX_BODY_BYTES) in reply.body["detail"], reply.body


async def test_wrong_types_and_unknown_fields_are_422_naming_the_field(
    api: Api, target: Target
) -> None:
    cases = [
        ("POST", "/api/v1/projects", {"name": 5, "repo_url": "https://x.invalid"}, "name"),
        ("PATCH", f"/api/v1/projects/{target.name}", {"branch": ["main"]}, "branch"),
        ("PATCH", f"/api/v1/projects/{target.name}", {"brnch": "main"}, "brnch"),
        ("POST", f"/api/v1/projects/{target.name}/builds", {"deploy": "yes"}, "deploy"),
        ("POST", f"/api/v1/projects/{target.name}/builds", {"deplyo": False}, "deplyo"),
        ("POST", f"/api/v1/projects/{target.name}/deployments", {"build_id": "x"}, "build_id"),
    ]
    for method, path, body, field in cases:
        reply = await api.call(method, path, body)
        assert reply.status == 422, (body, reply.body)
        assert [e["field"] for e in reply.body["errors"]] == [field], reply.body


async def test_bad_query_values_are_422(api: Api, target: Target) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()
    for params in (
        {"limit": "abc"},
        {"limit": "0"},
        {"limit": "10000"},
        {"cursor": "%%%"},
        {"cursor": deep},  # JSON nested past the decoder's depth
    ):
        reply = await api.call("GET", f"/api/v1/projects/{target.name}/builds", params=params)
        assert reply.status == 422, (params, reply.body)
        assert [e["field"] for e in reply.body["errors"]] == [next(iter(params))]


async def test_ids_that_are_not_uuids_are_404(api: Api) -> None:
    """A malformed id names no resource: 404 like an unknown one, on every kind of id."""
    for path in ("/api/v1/builds/nope", "/api/v1/deployments/nope", "/api/v1/builds/1/logs"):
        reply = await api.call("GET", path)
        assert reply.status == 404, (path, reply.body)
        assert reply.content_type.startswith("application/problem+json")


async def test_json_nested_too_deeply_on_the_websocket_is_an_error_frame(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.client.ws_connect("/api/v1/ws", headers=headers) as ws:
        deep = "[" * 100_000 + "]" * 100_000
        for text in (deep, f'{{"type": "unsubscribe", "channel": "x", "skipped": {deep}}}'):
            await ws.send_str(text)
            frame = await next_control_frame(ws)
            assert frame["type"] == "error", frame
            assert "internal error" not in frame["message"], frame
        assert not ws.closed


def signed(host: str, secret: str, body: bytes, event: str) -> dict[str, str]:
    """Headers of a delivery from `host`, signed as it signs (so the body gets decoded)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Delivery-Id": str(uuid.uuid4())}
    match host:
        case "gitlab":
            return {**headers, "X-Gitlab-Token": secret, "X-Gitlab-Event": event}
        case "gitea":
            return {**headers, "X-Gitea-Signature": digest, "X-Gitea-Event": event}
        case "github":
            headers["X-GitHub-Event"] = event
        case _:
            headers["X-Event"] = event
    return {**headers, "X-Hub-Signature-256": f"sha256={digest}"}


HOOK_ROUTES = [r for r in ROUTES if r.path.startswith("/api/v1/hooks/")]


@FUZZ
@given(
    route=st.sampled_from(HOOK_ROUTES),
    body=raw_bodies,
    event=st.sampled_from(["push", "Push Hook", "issues", "ping"]),
)
async def test_signed_raw_bodies_on_the_webhooks(
    api: Api, target: Target, route: RouteDoc, body: bytes, event: str
) -> None:
    """A correctly signed delivery gets its body decoded: whatever its bytes, no 500."""
    host = route.path.split("/")[4]
    path = fill(route.path, target)
    reply = await api.call(
        "POST", path, data=body, headers=signed(host, target.webhook_secret, body, event), token=""
    )
    assert_no_server_error(reply, (host, event, body[:100]))
