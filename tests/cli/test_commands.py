"""The client commands end to end against a stand-in API speaking the control-api's protocol:
exit codes, what is printed, problem+json errors, the live log and the deployment wait."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from launchdeck.cli.client import ApiError, FieldError
from launchdeck.cli.main import run
from launchdeck.cli.output import format_problem
from tests.cli.conftest import ServeApp

TOKEN = "test-token"
BUILD_ID = "7d1f0c7e-0000-4000-8000-000000000001"
DEPLOYMENT_ID = "7d1f0c7e-0000-4000-8000-0000000000d1"


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "status": status, "title": title}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/problem+json"
    )


@dataclass
class StubApi:
    """Just enough of the control-api for the commands; records what it was asked."""

    build_outcome: str = "succeeded"
    deployment_statuses: list[str] = field(default_factory=lambda: ["activating", "active"])
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    ws_from_seq: list[str] = field(default_factory=list)
    log: list[tuple[str, str]] = field(
        default_factory=lambda: [
            ("system", "▶ Cloning /repo (main)"),
            ("stdout", "copying index.html"),
            ("stderr", "warning: no favicon"),
            ("system", "▶ Packaged 2 files in 0.01s"),
        ]
    )

    def build(self, done: bool) -> dict[str, Any]:
        failed = self.build_outcome == "failed"
        return {
            "id": BUILD_ID,
            "number": 3,
            "ref": "main",
            "status": self.build_outcome if done else "queued",
            "error": "repository not found: /nope" if done and failed else None,
            "deployment_id": DEPLOYMENT_ID if done and not failed else None,
        }

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.json() if request.can_read_body else None
            self.requests.append((request.method, request.path, body))
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return problem(401, "Unauthorized", "a valid bearer token is required")
            response: web.StreamResponse = await handler(request)
            return response

        async def create_project(request: web.Request) -> web.Response:
            body = await request.json()
            if body["name"] != body["name"].lower() or " " in body["name"]:
                return problem(
                    422,
                    "Invalid request",
                    "1 field is invalid",
                    [{"field": "name", "message": "must match ^[a-z0-9][a-z0-9-]{0,62}$"}],
                )
            project = {"id": "p-1", "branch": "main", "webhook_secret": "whsec", **body}
            return web.json_response(project, status=201)

        async def list_projects(request: web.Request) -> web.Response:
            if request.query.get("cursor") == "page2":
                items = [{"id": "p-2", "name": "docs", "branch": "main", "repo_url": "/d"}]
                return web.json_response({"items": items, "next_cursor": None})
            items = [{"id": "p-1", "name": "site", "branch": "main", "repo_url": "/s"}]
            return web.json_response({"items": items, "next_cursor": "page2"})

        async def trigger(request: web.Request) -> web.Response:
            if request.match_info["project"] != "site":
                return problem(404, "Not found", "no project named nope")
            return web.json_response(self.build(done=False), status=202)

        async def get_build(request: web.Request) -> web.Response:
            return web.json_response(self.build(done=True))

        async def log_text(request: web.Request) -> web.Response:
            return web.Response(text="".join(f"{line}\n" for _, line in self.log))

        async def log_ws(request: web.Request) -> web.WebSocketResponse:
            self.ws_from_seq.append(request.query.get("from_seq", ""))
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            start = int(request.query.get("from_seq", "1"))
            for seq, (stream, line) in enumerate(self.log, start=1):
                if seq >= start:
                    frame = {"type": "log", "seq": seq, "ts": "t", "stream": stream, "line": line}
                    await ws.send_json(frame)
            await ws.send_json({"type": "end", "status": self.build_outcome})
            await ws.close()
            return ws

        async def get_deployment(request: web.Request) -> web.Response:
            status = (
                self.deployment_statuses.pop(0)
                if len(self.deployment_statuses) > 1
                else (self.deployment_statuses[0])
            )
            return web.json_response(
                {
                    "id": DEPLOYMENT_ID,
                    "build_id": BUILD_ID,
                    "status": status,
                    "url": "http://site.localhost:8000/",
                    "error": "release checksum mismatch" if status == "failed" else None,
                }
            )

        async def rollback(request: web.Request) -> web.Response:
            return web.json_response(
                {"id": DEPLOYMENT_ID, "build_id": "b-old", "status": "pending"}, status=202
            )

        app = web.Application(middlewares=[auth])
        app.router.add_post("/api/v1/projects", create_project)
        app.router.add_get("/api/v1/projects", list_projects)
        app.router.add_post("/api/v1/projects/{project}/builds", trigger)
        app.router.add_get("/api/v1/builds/{id}", get_build)
        app.router.add_get("/api/v1/builds/{id}/logs", log_text)
        app.router.add_get("/api/v1/builds/{id}/logs/ws", log_ws)
        app.router.add_get("/api/v1/deployments/{id}", get_deployment)
        app.router.add_post("/api/v1/projects/{project}/rollback", rollback)
        return app


def cli(url: str, *args: str, token: str = TOKEN) -> int:
    return run([*args, "--api-url", url, "--token", token], environ={})


def test_problem_is_formatted_as_title_detail_and_field_errors() -> None:
    """`error: <title>: <detail>` then one line per field error."""
    error = ApiError(
        status=422,
        title="Invalid request",
        detail="2 fields are invalid",
        errors=[FieldError("name", "must be a slug"), FieldError("repo_url", "is required")],
    )
    assert format_problem(error) == [
        "Invalid request: 2 fields are invalid",
        "  - name: must be a slug",
        "  - repo_url: is required",
    ]
    assert format_problem(ApiError(status=404, title="Not found")) == ["Not found"]
    # The API's detail for a single invalid field is that field's error: said once.
    single = ApiError(
        status=422,
        title="Unprocessable Content",
        detail="name: must be a slug",
        errors=[FieldError("name", "must be a slug")],
    )
    assert format_problem(single) == ["Unprocessable Content: name: must be a slug"]


def test_non_problem_error_responses_still_read_well() -> None:
    """A proxy's HTML 502 becomes `HTTP 502 Bad Gateway`; a JSON problem keeps its fields."""
    html = ApiError.from_body(502, "Bad Gateway", "text/html", "<html>oops</html>")
    assert format_problem(html) == ["HTTP 502 Bad Gateway"]
    plain = ApiError.from_body(500, "Internal Server Error", "text/plain", "boom\n")
    assert str(plain) == "HTTP 500 Internal Server Error: boom"
    body = json.dumps({"title": "Conflict", "status": 409, "detail": "name taken"})
    assert str(ApiError.from_body(409, "Conflict", "application/problem+json", body)) == (
        "Conflict: name taken"
    )


def test_validation_error_is_printed_and_exits_1(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """`projects create` with a bad name prints the problem and its field errors, exit code 1."""
    url = serve_app(StubApi().app())
    assert cli(url, "projects", "create", "Bad Name", "https://example.com/r.git") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: Invalid request: 1 field is invalid",
        "  - name: must match ^[a-z0-9][a-z0-9-]{0,62}$",
    ]


def test_missing_token_gets_the_401_problem(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong token: the API's 401 is shown as an error, exit code 1."""
    url = serve_app(StubApi().app())
    assert cli(url, "projects", "list", token="wrong") == 1
    assert capsys.readouterr().err.strip() == (
        "error: Unauthorized: a valid bearer token is required"
    )


def test_projects_create_and_list(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """create sends name, absolute local repo path and build overrides; list follows pages."""
    stub = StubApi()
    url = serve_app(stub.app())
    repo = tmp_path / "repo"
    repo.mkdir()
    assert (
        run(
            [
                "--api-url",
                url,
                "--token",
                TOKEN,
                "projects",
                "create",
                "site",
                str(repo),
                "--output-dir",
                "public",
                "--branch",
                "live",
            ],
            environ={},
        )
        == 0
    )
    method, path, body = stub.requests[-1]
    assert (method, path) == ("POST", "/api/v1/projects")
    assert body == {
        "name": "site",
        "repo_url": str(repo),
        "branch": "live",
        "build": {"output_dir": "public"},
    }
    out = capsys.readouterr().out
    assert "Created project site (p-1)" in out
    assert "webhook secret (shown once): whsec" in out

    assert cli(url, "projects", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "BRANCH", "ID", "REPO"]
    assert [line.split()[0] for line in lines[1:]] == ["site", "docs"]


def test_deploy_follows_the_log_and_prints_the_url(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy prints every log line once (stderr lines on stderr), the deployment's status
    changes, then the live URL; exit code 0."""
    stub = StubApi()
    url = serve_app(stub.app())
    assert cli(url, "deploy", "site", "--ref", "main") == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert out[0] == f"Build #3 {BUILD_ID} of site (main) queued"
    assert out[1:4] == [
        "▶ Cloning /repo (main)",
        "copying index.html",
        "▶ Packaged 2 files in 0.01s",
    ]
    assert captured.err.splitlines() == ["warning: no favicon"]
    assert f"Deployment {DEPLOYMENT_ID}: activating" in out
    assert f"Deployment {DEPLOYMENT_ID}: active" in out
    assert out[-1] == "Live at http://site.localhost:8000/"
    assert ("POST", "/api/v1/projects/site/builds", {"ref": "main"}) in stub.requests
    assert stub.ws_from_seq == ["1"]


def test_failed_build_exits_non_zero_with_the_reason(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed build: the log is shown, then the build's error; exit code 1."""
    url = serve_app(StubApi(build_outcome="failed").app())
    assert cli(url, "deploy", "site") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: build #3 failed: repository not found: /nope"


def test_failed_deployment_exits_non_zero_with_the_reason(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """The build succeeds but its deployment fails: the deployment's error, exit code 1."""
    url = serve_app(StubApi(deployment_statuses=["activating", "failed"]).app())
    assert cli(url, "deploy", "site") == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: deployment failed: release checksum mismatch"
    )


def test_deploy_of_an_unknown_project(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 404 problem of an unknown project is printed; exit code 1."""
    url = serve_app(StubApi().app())
    assert cli(url, "deploy", "nope") == 1
    assert capsys.readouterr().err.strip() == "error: Not found: no project named nope"


def test_logs_without_and_with_follow(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logs` prints the HTTP text log; `logs -f` streams the same lines to the end."""
    url = serve_app(StubApi().app())
    assert cli(url, "logs", BUILD_ID) == 0
    text = capsys.readouterr().out
    assert text.splitlines() == [line for _, line in StubApi().log]
    assert cli(url, "logs", BUILD_ID, "-f") == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() + captured.err.splitlines() == [
        "▶ Cloning /repo (main)",
        "copying index.html",
        "▶ Packaged 2 files in 0.01s",
        "warning: no favicon",
    ]


def test_rollback_waits_for_the_deployment(
    serve_app: ServeApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """rollback prints the new deployment, waits until it is active, prints the URL."""
    url = serve_app(StubApi().app())
    assert cli(url, "rollback", "site") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Rolling back site: deployment {DEPLOYMENT_ID} of build b-old"
    assert out[-1] == "Live at http://site.localhost:8000/"


def test_unreachable_api_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: `cannot reach the API at <url>`, exit code 1."""
    from launchdeck.cli.embedded import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert cli(url, "projects", "list") == 1
    assert capsys.readouterr().err.startswith(f"error: cannot reach the API at {url}")
