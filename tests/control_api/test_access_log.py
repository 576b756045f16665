"""The control-api's access log: one structured line per request, never a token."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.control_api.support import Api


async def test_access_log_has_route_and_status_but_no_token(api: Api) -> None:
    """A request authenticated by `?token=` is logged with its route and status, not the token."""
    token = api.token
    assert token
    with capture_logs() as logs:
        reply = await api.call("GET", f"/api/v1/projects?token={token}&limit=5", token="")
    assert reply.status == 200
    access = [e for e in logs if e["event"] == "http_request"]
    assert len(access) == 1
    entry = access[0]
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v1/projects"
    assert entry["route"] == "/api/v1/projects"
    assert entry["status"] == 200
    assert entry["ms"] >= 0
    assert all(token not in str(value) for e in logs for value in e.values())


async def test_access_log_records_failures(api: Api) -> None:
    """A request without a token is logged with its 401."""
    with capture_logs() as logs:
        reply = await api.call("GET", "/api/v1/projects", token="")
    assert reply.status == 401
    statuses = [e["status"] for e in logs if e["event"] == "http_request"]
    assert statuses == [401]
