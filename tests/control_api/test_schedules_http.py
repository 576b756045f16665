"""`/api/v1/projects/{id}/schedules` and `/api/v1/schedules/{id}`: create, list, read, change,
delete; bad input is a 422 naming the field; scopes and other projects' tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.control_api.support import Api, token, unique

HTTP_ACTION = {"type": "http", "path": "/cron/daily"}


async def create(api: Api, project: str, **body: Any) -> dict[str, Any]:
    body.setdefault("name", unique("job"))
    body.setdefault("cron", "*/5 * * * *")
    body.setdefault("action", HTTP_ACTION)
    reply = await api.call("POST", f"/api/v1/projects/{project}/schedules", body)
    assert reply.status == 201, reply.body
    return dict(reply.body)


async def test_create_then_read_list_change_delete(api: Api) -> None:
    """The whole life of a schedule, with defaults filled in and the next tick computed."""
    project = await api.create_project(unique("sch"))
    created = await create(
        api,
        project["name"],
        name="nightly",
        cron="0  3 * * *",
        timezone="Europe/Paris",
        action={"type": "build", "ref": "main"},
    )
    assert created["cron"] == "0 3 * * *"
    assert created["timezone"] == "Europe/Paris"
    assert created["enabled"] is True
    assert created["action"] == {
        "type": "build",
        "ref": "main",
        "deploy": True,
        "environment": None,
    }
    assert created["last_run_at"] is None
    assert created["last_outcome"] is None
    next_run = datetime.fromisoformat(created["next_run_at"])
    assert next_run > datetime.now(UTC)
    assert next_run.astimezone(ZoneInfo("Europe/Paris")).hour == 3

    got = await api.call("GET", f"/api/v1/schedules/{created['id']}")
    assert got.status == 200
    assert got.body == created
    listed = await api.call("GET", f"/api/v1/projects/{project['id']}/schedules")
    assert listed.status == 200
    assert [s["id"] for s in listed.body["items"]] == [created["id"]]

    changed = await api.call(
        "PATCH",
        f"/api/v1/schedules/{created['id']}",
        {"enabled": False, "action": {"type": "command", "command": "python manage.py x"}},
    )
    assert changed.status == 200, changed.body
    assert changed.body["enabled"] is False
    assert changed.body["next_run_at"] is None
    assert changed.body["action"] == {
        "type": "command",
        "command": "python manage.py x",
        "timeout_s": 600,
        "allow_overlap": False,
    }
    enabled = await api.call("PATCH", f"/api/v1/schedules/{created['id']}", {"enabled": True})
    assert enabled.body["next_run_at"] is not None

    assert (await api.call("DELETE", f"/api/v1/schedules/{created['id']}")).status == 204
    assert (await api.call("GET", f"/api/v1/schedules/{created['id']}")).status == 404


async def test_list_pages_by_name(api: Api) -> None:
    project = await api.create_project(unique("sch"))
    for name in ("c", "a", "b"):
        await create(api, project["name"], name=name)
    first = await api.call("GET", f"/api/v1/projects/{project['name']}/schedules?limit=2")
    assert [s["name"] for s in first.body["items"]] == ["a", "b"]
    cursor = first.body["next_cursor"]
    rest = await api.call(
        "GET", f"/api/v1/projects/{project['name']}/schedules?limit=2&cursor={cursor}"
    )
    assert [s["name"] for s in rest.body["items"]] == ["c"]
    assert rest.body["next_cursor"] is None


async def test_a_name_is_unique_per_project(api: Api) -> None:
    project = await api.create_project(unique("sch"))
    await create(api, project["name"], name="same")
    reply = await api.call(
        "POST",
        f"/api/v1/projects/{project['name']}/schedules",
        {"name": "same", "cron": "* * * * *", "action": HTTP_ACTION},
    )
    assert reply.status == 409


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"cron": "*/5 * * *"}, "cron", "must have 5 fields"),
        ({"cron": "99 * * * *"}, "cron", "is not a valid cron expression"),
        ({"cron": "@daily"}, "cron", "must have 5 fields"),
        ({"cron": "0 0 30 2 *"}, "cron", "never matches a date"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"timezone": "../../etc/passwd"}, "timezone", "IANA"),
        ({"action": {"type": "teleport"}}, "action.type", "Invalid value"),
        ({"action": {"path": "/x"}}, "action.type", "is required"),
        ({"action": {"type": "command"}}, "action.command", "is required"),
        ({"action": {"type": "http", "path": "no-slash"}}, "action.path", ""),
        ({"action": {"type": "http", "path": "/x", "method": "DELETE"}}, "action.method", ""),
        ({"action": {"type": "http", "path": "/x", "timeout_s": 0}}, "action.timeout_s", ""),
        ({"action": {"type": "build", "deplyo": False}}, "action.deplyo", "is not a known field"),
        ({"name": ""}, "name", ""),
        ({"enabled": "yes"}, "enabled", ""),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    api: Api, change: dict[str, Any], field: str, message: str
) -> None:
    project = await api.create_project(unique("sch"))
    body = {"name": "x", "cron": "* * * * *", "action": HTTP_ACTION, **change}
    reply = await api.call("POST", f"/api/v1/projects/{project['id']}/schedules", body)
    assert reply.status == 422, reply.body
    assert reply.content_type.startswith("application/problem+json")
    [error] = reply.body["errors"]
    assert error["field"] == field
    assert message in error["message"]


async def test_a_bad_patch_changes_nothing(api: Api) -> None:
    project = await api.create_project(unique("sch"))
    created = await create(api, project["name"])
    reply = await api.call(
        "PATCH", f"/api/v1/schedules/{created['id']}", {"cron": "* * *", "name": "other"}
    )
    assert reply.status == 422
    assert reply.body["errors"][0]["field"] == "cron"
    assert (await api.call("GET", f"/api/v1/schedules/{created['id']}")).body == created


async def test_bad_ids_are_404(api: Api) -> None:
    for path in ("/api/v1/schedules/not-a-uuid", f"/api/v1/schedules/{uuid.uuid4()}"):
        assert (await api.call("GET", path)).status == 404
        assert (await api.call("PATCH", path, {"enabled": False})).status == 404
        assert (await api.call("DELETE", path)).status == 404


async def test_scopes_and_other_projects(api: Api) -> None:
    """A read token reads but cannot change (403); another project's token gets 404 for
    everything; a write token of the project does it all."""
    project = await api.create_project(unique("sch"))
    created = await create(api, project["name"])
    one = f"/api/v1/schedules/{created['id']}"
    many = f"/api/v1/projects/{project['id']}/schedules"
    body = {"name": "y", "cron": "* * * * *", "action": HTTP_ACTION}

    reader = token(["read", "deploy"], project_id=project["id"])
    assert (await api.call("GET", one, token=reader)).status == 200
    assert (await api.call("GET", many, token=reader)).status == 200
    assert (await api.call("POST", many, body, token=reader)).status == 403
    assert (await api.call("PATCH", one, {"enabled": False}, token=reader)).status == 403
    assert (await api.call("DELETE", one, token=reader)).status == 403

    other = token(["read", "deploy", "write"], project_id=str(uuid.uuid4()))
    for method, path, json in (
        ("GET", one, None),
        ("PATCH", one, {"enabled": False}),
        ("DELETE", one, None),
        ("GET", many, None),
        ("POST", many, body),
    ):
        assert (await api.call(method, path, json, token=other)).status == 404, (method, path)

    writer = token(["write"], project_id=project["id"])
    assert (await api.call("POST", many, body, token=writer)).status == 201
    assert (await api.call("PATCH", one, {"enabled": False}, token=writer)).status == 200
    assert (await api.call("DELETE", one, token=writer)).status == 204
