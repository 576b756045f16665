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
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
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
