"""`/api/v1/templates`: create (version 1), new versions by PUT (earlier ones unchanged), read by
id or name and version, list, the dry run, and the 422s naming step, line and variable."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from tests.control_api.support import Api, token, unique

BASE = "/api/v1/templates"
OUTLINE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "sections": {"type": "array"}},
    "required": ["title"],
}
STEPS: list[dict[str, Any]] = [
    {
        "name": "outline",
        "prompt": "Outline a page for {{ business }} ({{ service }}) in {{ area }}.",
        "output": "json",
        "schema": OUTLINE_SCHEMA,
    },
    {
        "name": "page",
        "prompt": 'Write the page "{{ steps.outline.output.title }}"\nfor {{ business }}.',
    },
]


async def create(api: Api, name: str | None = None, steps: Any = None) -> dict[str, Any]:
    body = {"name": name or unique("tpl"), "steps": STEPS if steps is None else steps}
    reply = await api.call("POST", BASE, body)
    assert reply.status == 201, reply.body
    return dict(reply.body)


async def test_create_then_read_by_id_and_by_name(api: Api) -> None:
    created = await create(api)
    assert created["version"] == 1
    assert created["versions"] == [1]
    assert created["steps"][0] == STEPS[0]
    # The defaults, filled in.
    assert created["steps"][1] == {**STEPS[1], "output": "text", "schema": None}
    assert created["created_by"] == "tests"
    by_id = await api.call("GET", f"{BASE}/{created['id']}")
    by_name = await api.call("GET", f"{BASE}/{created['name']}")
    assert by_id.status == by_name.status == 200
    assert by_id.body == by_name.body == created


async def test_put_makes_the_next_version_and_the_earlier_one_stays(
    api: Api, pool: asyncpg.Pool
) -> None:
    created = await create(api)
    changed = [STEPS[0], {"name": "page", "prompt": "Version two for {{ business }}"}]
    reply = await api.call("PUT", f"{BASE}/{created['name']}", {"steps": changed})
    assert reply.status == 201, reply.body
    assert reply.body["version"] == 2
    assert reply.body["versions"] == [1, 2]
    assert reply.headers["Location"] == f"{BASE}/{created['id']}?version=2"
    # The create body as is (with its name) works too.
    again = await api.call(
        "PUT", f"{BASE}/{created['id']}", {"name": created["name"], "steps": STEPS}
    )
    assert again.body["version"] == 3
    latest = await api.call("GET", f"{BASE}/{created['id']}")
    assert latest.body["version"] == 3
    first = await api.call("GET", f"{BASE}/{created['id']}", params={"version": "1"})
    assert first.status == 200
    assert first.body["steps"] == created["steps"]
    assert first.body["versions"] == [1, 2, 3]
    second = await api.call("GET", f"{BASE}/{created['id']}", params={"version": "2"})
    assert second.body["steps"][1]["prompt"] == "Version two for {{ business }}"
    missing = await api.call("GET", f"{BASE}/{created['id']}", params={"version": "9"})
    assert missing.status == 404
    assert "no version 9" in missing.body["detail"]
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM template_versions WHERE template_id = $1",
            uuid.UUID(created["id"]),
        )
    assert count == 3


async def test_concurrent_puts_get_distinct_versions(api: Api) -> None:
    """The template row is locked while a version is numbered: no two PUTs share one."""
    created = await create(api)
    path = f"{BASE}/{created['id']}"
    replies = await asyncio.gather(
        *(api.call("PUT", path, {"steps": [{"name": "a", "prompt": f"v{i}"}]}) for i in range(6))
    )
    assert sorted(r.body["version"] for r in replies) == [2, 3, 4, 5, 6, 7]
    for reply in replies:  # each version holds what its own PUT sent
        again = await api.call("GET", path, params={"version": str(reply.body["version"])})
        assert again.body["steps"] == reply.body["steps"]


async def test_a_put_cannot_rename(api: Api) -> None:
    created = await create(api)
    reply = await api.call("PUT", f"{BASE}/{created['id']}", {"name": "other", "steps": STEPS})
    assert reply.status == 422
    assert reply.body["errors"][0]["field"] == "name"


async def test_a_syntax_error_is_a_422_naming_the_step_and_line(api: Api) -> None:
    steps = [STEPS[0], {"name": "page", "prompt": "fine\n{% if business %}\nnever closed"}]
    reply = await api.call("POST", BASE, {"name": unique("tpl"), "steps": steps})
    assert reply.status == 422
    [error] = reply.body["errors"]
    assert error["field"] == "steps[1].prompt"
    assert error["message"].startswith("line 3: syntax error")
    name = unique("tpl")
    reply = await api.call("GET", f"{BASE}/{name}")
    assert reply.status == 404


async def test_schemas_are_checked(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"name": "a", "prompt": "A", "output": "json"}, "steps[0].schema", "is required"),
        (
            {"name": "a", "prompt": "A", "output": "json", "schema": {"type": "objekt"}},
            "steps[0].schema",
            "type",
        ),
        ({"name": "a", "prompt": "A", "schema": {"type": "object"}}, "steps[0].schema", "only"),
        ({"name": "a", "prompt": "A", "extra": 1}, "steps[0].extra", "not a known field"),
        ({"name": "A-b", "prompt": "A"}, "steps[0].name", ""),
        (  # Postgres holds no NUL in jsonb: a 422, not a 500 (found by schemathesis)
            {"name": "a", "prompt": "A", "output": "json", "schema": {"a\u0000": {}}},
            "steps[0].schema",
            "NUL",
        ),
        (
            {"name": "a", "prompt": "A", "output": "json", "schema": {"enum": [["x\u0000"]]}},
            "steps[0].schema",
            "NUL",
        ),
    ]
    for step, field, words in cases:
        reply = await api.call("POST", BASE, {"name": unique("tpl"), "steps": [step]})
        assert reply.status == 422, (step, reply.body)
        assert reply.body["errors"][0]["field"] == field
        assert words in reply.body["errors"][0]["message"]


async def test_other_step_rules(api: Api) -> None:
    twice = [{"name": "a", "prompt": "A"}, {"name": "a", "prompt": "B"}]
    reply = await api.call("POST", BASE, {"name": unique("tpl"), "steps": twice})
    assert reply.status == 422
    assert reply.body["errors"][0]["field"] == "steps[1].name"
    reply = await api.call("POST", BASE, {"name": unique("tpl"), "steps": []})
    assert reply.status == 422
    assert reply.body["errors"][0]["field"] == "steps"
    taken = await create(api)
    reply = await api.call("POST", BASE, {"name": taken["name"], "steps": STEPS})
    assert reply.status == 409


async def test_dry_run_renders_every_step(api: Api) -> None:
    created = await create(api)
    variables = {"business": "Joe's Plumbing", "service": "leaks", "area": "Lyon"}
    reply = await api.call("POST", f"{BASE}/{created['name']}/render", {"variables": variables})
    assert reply.status == 200, reply.body
    assert reply.body["version"] == 1
    assert reply.body["steps"] == [
        {
            "name": "outline",
            "output": "json",
            "prompt": "Outline a page for Joe's Plumbing (leaks) in Lyon.",
        },
        {
            "name": "page",
            "output": "text",
            "prompt": 'Write the page "<outline>.title"\nfor Joe\'s Plumbing.',
        },
    ]


async def test_dry_run_of_an_older_version(api: Api) -> None:
    created = await create(api, steps=[{"name": "a", "prompt": "one {{ x }}"}])
    await api.call("PUT", f"{BASE}/{created['id']}", {"steps": [{"name": "a", "prompt": "two"}]})
    path = f"{BASE}/{created['id']}/render"
    old = await api.call("POST", path, {"variables": {"x": 1}, "version": 1})
    assert old.body["steps"][0]["prompt"] == "one 1"
    new = await api.call("POST", path)  # no body: the latest, no variables
    assert (new.status, new.body["version"], new.body["steps"][0]["prompt"]) == (200, 2, "two")


async def test_an_undefined_variable_is_a_422_naming_step_line_and_variable(api: Api) -> None:
    created = await create(api)
    reply = await api.call(
        "POST",
        f"{BASE}/{created['id']}/render",
        {"variables": {"business": "B", "service": "S"}},
    )
    assert reply.status == 422
    [error] = reply.body["errors"]
    assert error["field"] == "steps[0].prompt"
    assert error["message"] == "step 'outline', line 1: 'area' is undefined"
    reply = await api.call("POST", f"{BASE}/{created['id']}/render", {"variables": {"steps": {}}})
    assert reply.status == 422
    assert reply.body["errors"][0]["field"] == "variables.steps"


async def test_a_sandbox_escape_is_refused(api: Api) -> None:
    created = await create(api, steps=[{"name": "a", "prompt": "{{ ''.__class__.__mro__ }}"}])
    reply = await api.call("POST", f"{BASE}/{created['id']}/render", {})
    assert reply.status == 422
    assert "unsafe" in reply.body["detail"]
    assert "object" not in reply.body["detail"].split("unsafe")[1]


async def test_the_list_is_paginated_by_name_at_the_latest_version(api: Api) -> None:
    prefix = f"pg-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in reversed(names):
        await create(api, name)
    await api.call("PUT", f"{BASE}/{names[2]}", {"steps": STEPS})
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        reply = await api.call("GET", BASE, params=params)
        assert reply.status == 200
        assert len(reply.body["items"]) <= 2
        seen.extend(reply.body["items"])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    ours = [t for t in seen if t["name"].startswith(prefix)]
    assert [t["name"] for t in ours] == names
    assert [t["version"] for t in ours] == [1, 1, 2, 1, 1]
    assert [t["name"] for t in seen] == sorted(t["name"] for t in seen)


async def test_only_admins_write_and_any_token_reads_and_dry_runs(api: Api) -> None:
    created = await create(api)
    project = await api.create_project(unique("tplp"))
    writer = token(["read", "deploy", "write"], project_id=project["id"])
    reader = token(["read"], project_id=str(uuid.uuid4()))
    reply = await api.call("POST", BASE, {"name": unique("tpl"), "steps": STEPS}, token=writer)
    assert reply.status == 403
    reply = await api.call("PUT", f"{BASE}/{created['id']}", {"steps": STEPS}, token=writer)
    assert reply.status == 403
    for bearer in (writer, reader):
        reply = await api.call("GET", f"{BASE}/{created['name']}", token=bearer)
        assert reply.status == 200
        reply = await api.call(
            "POST",
            f"{BASE}/{created['name']}/render",
            {"variables": {"business": "b", "service": "s", "area": "a"}},
            token=bearer,
        )
        assert reply.status == 200
    latest = await api.call("GET", f"{BASE}/{created['id']}")
    assert latest.body["versions"] == [1]


async def test_writes_are_audited(api: Api) -> None:
    created = await create(api)
    await api.call("PUT", f"{BASE}/{created['id']}", {"steps": STEPS})
    reply = await api.call("GET", "/api/v1/audit", params={"action": "template.version"})
    assert any(e["target"].startswith(f"{BASE}/{created['id']}") for e in reply.body["items"])
    reply = await api.call("GET", "/api/v1/audit", params={"action": "template.create"})
    assert any(e["target"] == f"{BASE}/{created['id']}" for e in reply.body["items"])


async def test_unknown_templates_are_404(api: Api) -> None:
    for ref in (str(uuid.uuid4()), "no-such-template", "bad name", "x" * 300):
        reply = await api.call("GET", f"{BASE}/{ref}")
        assert reply.status == 404, ref
        reply = await api.call("POST", f"{BASE}/{ref}/render", {})
        assert reply.status == 404, ref
    reply = await api.call("GET", f"{BASE}/no-such", params={"version": "zero"})
    assert reply.status == 422
