"""Runs over HTTP: `POST …/runs` queues a run and its RunRequested (one transaction); its
status events move it like a build's (never back, never out of a final status); its log is read
from the LOGS stream as text or NDJSON; lists page and filter by schedule; bad input is a 422."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from launchdeck.contracts.codec import decode, encode
from launchdeck.contracts.messages import (
    LogLine,
    RunCancelRequested,
    RunLogBatch,
    RunRequested,
    RunStatusChanged,
)
from launchdeck.contracts.subjects import (
    KV_CANCELLATIONS,
    SUBJECT_RUN_JOBS,
    run_event_subject,
    run_log_subject,
)
from launchdeck.control_api.domain.runs import fail_overdue_runs, request_run
from launchdeck.control_api.store import projects, runs
from tests.control_api.helpers import T0, apply
from tests.control_api.log_support import ADMIN, receive_frame
from tests.control_api.support import Api, token, unique

NDJSON = {"Accept": "application/x-ndjson"}


async def new_run(api: Api, command: str = "python manage.py clearsessions") -> dict[str, Any]:
    project = await api.create_project(unique("runs"))
    reply = await api.call(
        "POST", f"/api/v1/projects/{project['id']}/runs", {"command": command, "timeout_s": 120}
    )
    assert reply.status == 202, reply.body
    return dict(reply.body)


def event(run: dict[str, Any], status: str, **fields: Any) -> RunStatusChanged:
    fields.setdefault("at", T0)
    return RunStatusChanged(run_id=run["id"], project_id=run["project_id"], status=status, **fields)  # type: ignore[arg-type]


async def test_post_queues_a_run_and_its_command_in_one_transaction(
    api: Api, pool: asyncpg.Pool
) -> None:
    """202 with a queued run (Location: its URL); its RunRequested waits in the outbox for
    `ld.jobs.run`, keyed by the run id (the command's Nats-Msg-Id)."""
    project = await api.create_project(unique("runs"))
    reply = await api.call(
        "POST", f"/api/v1/projects/{project['name']}/runs", {"command": "node scripts/report.js"}
    )
    assert reply.status == 202, reply.body
    run = reply.body
    assert reply.headers["Location"] == f"/api/v1/runs/{run['id']}"
    assert run["status"] == "queued"
    assert (run["command"], run["timeout_s"], run["schedule_id"]) == (
        "node scripts/report.js",
        600,
        None,
    )
    assert run["exit_code"] is None
    assert run["deployment_id"] is None
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT subject, payload FROM outbox WHERE id = $1", uuid.UUID(run["id"])
        )
    assert row["subject"] == SUBJECT_RUN_JOBS
    job = decode(row["payload"], RunRequested)
    assert (job.run_id, job.project_id, job.project_name) == (
        run["id"],
        project["id"],
        project["name"],
    )
    assert (job.command, job.timeout_s) == ("node scripts/report.js", 600)
    got = await api.call("GET", f"/api/v1/runs/{run['id']}")
    assert got.status == 200
    assert got.body == run


async def test_bad_input_is_a_422_naming_the_field(api: Api) -> None:
    """An empty command, a newline in it, a timeout out of range, an unknown field: 422 with
    the field; an unknown project or run: 404."""
    project = await api.create_project(unique("runs"))
    path = f"/api/v1/projects/{project['id']}/runs"
    for body, field in [
        ({"command": ""}, "command"),
        ({"command": "echo a\necho b"}, "command"),
        ({"command": "x", "timeout_s": 0}, "timeout_s"),
        ({"command": "x", "timeout_s": 24 * 3600 + 1}, "timeout_s"),
        ({"command": "x", "timeout": 5}, "timeout"),
        ({}, "command"),
    ]:
        reply = await api.call("POST", path, body)
        assert reply.status == 422, (body, reply.body)
        assert reply.content_type.startswith("application/problem+json")
        assert field in json.dumps(reply.body), (body, reply.body)
    assert (await api.call("GET", "/api/v1/runs/not-a-uuid")).status == 404
    assert (await api.call("GET", f"/api/v1/runs/{uuid.uuid4()}")).status == 404
    bad = await api.call("GET", f"{path}?schedule_id=nope")
    assert bad.status == 422
    assert "schedule_id" in json.dumps(bad.body)


async def test_status_events_move_a_run_forward_only(api: Api, pool: asyncpg.Pool) -> None:
    """running (with its release) → failed with the exit code; a late `running` and a second
    final event change nothing."""
    run = await new_run(api)
    deployment_id, build_id = str(uuid.uuid4()), str(uuid.uuid4())
    started = datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
    ended = datetime(2030, 1, 1, 0, 0, 9, tzinfo=UTC)
    running = event(run, "running", deployment_id=deployment_id, build_id=build_id, at=started)
    assert (await apply(pool, running)).applied
    failed = event(run, "failed", exit_code=3, error="exited with code 3", at=ended)
    assert (await apply(pool, failed)).applied
    assert not (await apply(pool, running)).applied  # late
    assert not (await apply(pool, event(run, "succeeded", exit_code=0))).applied
    body = (await api.call("GET", f"/api/v1/runs/{run['id']}")).body
    assert body["status"] == "failed"
    assert (body["exit_code"], body["error"]) == (3, "exited with code 3")
    assert (body["deployment_id"], body["build_id"]) == (deployment_id, build_id)
    assert body["started_at"] == started.isoformat().replace("+00:00", "Z")
    assert body["finished_at"] == ended.isoformat().replace("+00:00", "Z")


async def test_an_event_for_an_unknown_run_is_ignored(pool: asyncpg.Pool) -> None:
    """A stray run id (a deleted project's run) is acked and ignored, not retried forever."""
    stray = {"id": str(uuid.uuid4()), "project_id": str(uuid.uuid4())}
    assert (await apply(pool, event(stray, "running"))).result == "ignored"


async def test_the_log_is_read_from_the_stream_as_text_or_ndjson(
    api: Api, js: JetStreamContext
) -> None:
    """What the deploy-engine published on `ld.logs.run.<run>`: one line of text per log line,
    or NDJSON records; `after_seq` skips what the reader has; a repeated batch shows once."""
    run = await new_run(api)
    subject = run_log_subject(run["id"])
    lines = [
        LogLine(seq=i, ts=T0, stream="stderr" if i == 2 else "stdout", line=f"line {i}")
        for i in range(1, 5)
    ]
    for batch in (lines[:2], lines[:3], lines[3:]):  # the second repeats lines 1-2
        await js.publish(subject, encode(RunLogBatch(run_id=run["id"], lines=batch)))
    await js.publish(subject, encode(RunLogBatch(run_id=run["id"], eof=True, status="failed")))
    text = await api.call("GET", f"/api/v1/runs/{run['id']}/logs")
    assert text.status == 200
    assert text.content_type == "text/plain; charset=utf-8"
    assert text.body == "line 1\nline 2\nline 3\nline 4\n"
    async with api.client.get(
        f"/api/v1/runs/{run['id']}/logs?after_seq=2",
        headers={"Authorization": f"Bearer {token(['admin'])}", **NDJSON},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        rows = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [(r["seq"], r["line"], r["stream"], r["run_id"]) for r in rows] == [
        (3, "line 3", "stdout", run["id"]),
        (4, "line 4", "stdout", run["id"]),
    ]
    empty = await new_run(api)
    assert (await api.call("GET", f"/api/v1/runs/{empty['id']}/logs")).body == ""


async def test_a_projects_runs_page_newest_first_and_filter_by_schedule(
    api: Api, pool: asyncpg.Pool
) -> None:
    """Newest first in pages of `limit`; `?schedule_id=` keeps that schedule's runs; a
    schedule's active run is seen by `active_for_schedule` until it finishes."""
    created = await api.create_project(unique("runs"))
    schedule = uuid.uuid4()
    async with pool.acquire() as conn:
        project = await projects.get(conn, uuid.UUID(created["id"]))
        assert project is not None
        made = [
            await request_run(
                conn,
                project,
                command=f"echo {i}",
                timeout_s=30,
                schedule_id=schedule if i % 2 else None,
            )
            for i in range(5)
        ]
        assert await runs.active_for_schedule(conn, schedule)
        assert not await runs.active_for_schedule(conn, uuid.uuid4())
    path = f"/api/v1/projects/{created['id']}/runs"
    first = await api.call("GET", f"{path}?limit=3")
    assert [r["command"] for r in first.body["items"]] == ["echo 4", "echo 3", "echo 2"]
    second = await api.call("GET", f"{path}?limit=3&cursor={first.body['next_cursor']}")
    assert [r["command"] for r in second.body["items"]] == ["echo 1", "echo 0"]
    assert second.body["next_cursor"] is None
    mine = await api.call("GET", f"{path}?schedule_id={schedule}")
    assert [r["command"] for r in mine.body["items"]] == ["echo 3", "echo 1"]
    for run in made:
        if run.schedule_id == schedule:
            record = {"id": str(run.id), "project_id": str(run.project_id)}
            assert (await apply(pool, event(record, "succeeded", exit_code=0))).applied
    async with pool.acquire() as conn:
        assert not await runs.active_for_schedule(conn, schedule)


async def subscribe(ws: Any, channel: str, **extra: Any) -> dict[str, Any]:
    await ws.send_str(json.dumps({"type": "subscribe", "channel": channel, **extra}))
    frame: dict[str, Any] = await receive_frame(ws)
    return frame


async def test_a_run_log_and_its_status_reach_websocket_viewers(
    api: Api, js: JetStreamContext
) -> None:
    """`run:<id>:logs` on /api/v1/ws replays from `from_seq`, follows live lines, then ends with
    the run's status; `project:<id>:events` carries its status changes (kind `run`); a token of
    another project gets the error an unknown run gets."""
    run = await new_run(api)
    subject = run_log_subject(run["id"])
    line = lambda i: LogLine(seq=i, ts=T0, stream="stdout", line=f"out {i}")  # noqa: E731
    await js.publish(subject, encode(RunLogBatch(run_id=run["id"], lines=[line(1), line(2)])))
    ws = await api.client.ws_connect(f"/api/v1/ws?token={ADMIN}")
    events = f"project:{run['project_id']}:events"
    logs = f"run:{run['id']}:logs"
    assert await subscribe(ws, events) == {"type": "subscribed", "channel": events}
    assert await subscribe(ws, logs, from_seq=2) == {"type": "subscribed", "channel": logs}
    first = await receive_frame(ws)
    assert (first["type"], first["seq"], first["line"], first["run_id"]) == (
        "run_log",
        2,
        "out 2",
        run["id"],
    )
    running = event(run, "running", at=datetime.now(UTC))
    await js.publish(run_event_subject(run["project_id"], run["id"]), encode(running))
    frame = await receive_frame(ws)
    assert (frame["type"], frame["kind"], frame["event"]["status"]) == ("event", "run", "running")
    await js.publish(subject, encode(RunLogBatch(run_id=run["id"], lines=[line(3)])))
    await js.publish(subject, encode(RunLogBatch(run_id=run["id"], eof=True, status="failed")))
    assert (await receive_frame(ws))["seq"] == 3
    assert await receive_frame(ws) == {
        "type": "run_end",
        "run_id": run["id"],
        "status": "failed",
        "channel": logs,
    }
    await ws.close()

    other = token(["read"], project_id=str(uuid.uuid4()))
    ws = await api.client.ws_connect(f"/api/v1/ws?token={other}")
    refused = await subscribe(ws, logs)
    missing = str(uuid.uuid4())
    absent = await subscribe(ws, f"run:{missing}:logs")
    assert refused["type"] == "error"
    assert json.dumps(refused).replace(run["id"], missing) == json.dumps(absent)
    await ws.close()


async def test_cancel_a_queued_run_a_running_one_and_a_finished_one(
    api: Api, pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """Queued: `cancelled` at once (its event waits in the outbox), its mark in the
    `cancellations` bucket for the engine that picks it up. Running: still running with
    `cancel_requested_at`, until the engine reports `cancelled`. Finished: 409."""
    queued = await new_run(api)
    reply = await api.call("POST", f"/api/v1/runs/{queued['id']}/cancel")
    assert reply.status == 202, reply.body
    assert (reply.body["status"], reply.body["error"]) == (
        "cancelled",
        "Cancelled on request before it started",
    )
    assert reply.body["cancel_requested_at"] == reply.body["finished_at"]
    bucket = await js.key_value(KV_CANCELLATIONS)
    mark = decode((await bucket.get(queued["id"])).value or b"", RunCancelRequested)
    assert (mark.run_id, mark.project_id) == (queued["id"], queued["project_id"])
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT payload FROM outbox WHERE subject = $1",
            run_event_subject(queued["project_id"], queued["id"]),
        )
    assert [decode(r["payload"], RunStatusChanged).status for r in rows] == ["cancelled"]

    running = await new_run(api)
    assert (await apply(pool, event(running, "running"))).applied
    reply = await api.call("POST", f"/api/v1/runs/{running['id']}/cancel")
    assert reply.status == 202, reply.body
    assert reply.body["status"] == "running"
    assert reply.body["cancel_requested_at"] is not None
    stopped = event(running, "cancelled", error="Cancelled on request")
    assert (await apply(pool, stopped)).applied
    assert (await api.call("GET", f"/api/v1/runs/{running['id']}")).body["status"] == "cancelled"

    again = await api.call("POST", f"/api/v1/runs/{running['id']}/cancel")
    assert again.status == 409
    assert "has already finished: cancelled" in again.body["detail"]
    read_only = token(["read"], project_id=running["project_id"])
    denied = await api.call("POST", f"/api/v1/runs/{running['id']}/cancel", token=read_only)
    assert denied.status == 403


async def test_a_run_running_long_past_its_time_limit_is_failed(
    api: Api, pool: asyncpg.Pool
) -> None:
    """The stuck-jobs sweep fails a run still `running` past its time limit and the grace (its
    engine died), announcing it through the outbox; a run within its limit is left alone."""
    overdue = await new_run(api)  # timeout_s 120
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    assert (await apply(pool, event(overdue, "running", at=long_ago))).applied
    recent = await new_run(api)
    assert (await apply(pool, event(recent, "running", at=datetime.now(UTC)))).applied
    async with pool.acquire() as conn:
        failed = await fail_overdue_runs(conn, datetime.now(UTC))
        assert [str(r.id) for r in failed if str(r.id) in (overdue["id"], recent["id"])] == [
            overdue["id"]
        ]
        assert await fail_overdue_runs(conn, datetime.now(UTC)) == []
        row = await conn.fetchrow(
            "SELECT payload FROM outbox WHERE subject = $1",
            run_event_subject(overdue["project_id"], overdue["id"]),
        )
    announced = decode(row["payload"], RunStatusChanged)
    body = (await api.call("GET", f"/api/v1/runs/{overdue['id']}")).body
    assert (body["status"], announced.status) == ("failed", "failed")
    assert body["error"] == announced.error
    assert "no word from the deploy-engine 420 s after the run started" in body["error"]
    assert (await api.call("GET", f"/api/v1/runs/{recent['id']}")).body["status"] == "running"
