"""The client commands end to end against a stand-in API speaking the control-api's protocol:
exit codes, what is printed, problem+json errors, the live log and the deployment wait."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiohttp import web

from launchdeck.cli.client import ApiError
from launchdeck.cli.main import run
from launchdeck.cli.output import format_problem
from launchdeck.contracts.api import (
    BuildOut,
    BuildSettings,
    DeploymentOut,
    Page,
    Problem,
    ProblemField,
    ProjectCreated,
    ProjectOut,
)
from launchdeck.contracts.messages import LogStream
from launchdeck.contracts.statuses import BuildStatus, DeploymentStatus
from launchdeck.contracts.ws import EndFrame, LogFrame, encode_frame
from tests.cli.support import ServeApp

TOKEN = "test-token"
PROJECT_ID = uuid.UUID("7d1f0c7e-0000-4000-8000-0000000000a1")
BUILD_ID = "7d1f0c7e-0000-4000-8000-000000000001"
OLD_BUILD_ID = "7d1f0c7e-0000-4000-8000-000000000000"
DEPLOYMENT_ID = "7d1f0c7e-0000-4000-8000-0000000000d1"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def problem(
    status: int, title: str, detail: str, errors: list[ProblemField] | None = None
) -> web.Response:
    body = Problem(status=status, title=title, detail=detail, errors=errors or [])
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/problem+json"
    )


def reply(value: object, status: int = 200) -> web.Response:
    """A response encoded with the API's own types, as the control-api sends it."""
    return web.Response(
        status=status, body=msgspec.json.encode(value), content_type="application/json"
    )


def project_out(name: str, repo_url: str = "/s", **fields: Any) -> ProjectOut:
    return ProjectOut(
        id=fields.pop("id", PROJECT_ID),
        name=name,
        repo_url=repo_url,
        branch=fields.pop("branch", "main"),
        build=fields.pop("build", BuildSettings()),
        domains=fields.pop("domains", []),
        created_at=NOW,
        updated_at=NOW,
    )


@dataclass
class StubApi:
    """Just enough of the control-api for the commands; records what it was asked."""

    build_outcome: BuildStatus = "succeeded"
    deployment_statuses: list[DeploymentStatus] = field(
        default_factory=lambda: ["activating", "active"]
    )
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    ws_from_seq: list[str] = field(default_factory=list)
    log: list[tuple[LogStream, str]] = field(
        default_factory=lambda: [
            ("system", "▶ Cloning /repo (main)"),
            ("stdout", "copying index.html"),
            ("stderr", "warning: no favicon"),
            ("system", "▶ Packaged 2 files in 0.01s"),
        ]
    )

    def build(self, done: bool) -> BuildOut:
        failed = self.build_outcome == "failed"
        return BuildOut(
            id=uuid.UUID(BUILD_ID),
            project_id=PROJECT_ID,
            number=3,
            ref="main",
            commit_sha=None,
            commit_message=None,
            status=self.build_outcome if done else "queued",
            step=None,
            attempt=1,
            error="repository not found: /nope" if done and failed else None,
            trigger="api",
            deploy=True,
            environment="production",
            artifact=None,
            created_at=NOW,
            started_at=None,
            finished_at=None,
            deployment_id=uuid.UUID(DEPLOYMENT_ID) if done and not failed else None,
        )

    def deployment(self, status: DeploymentStatus, build_id: str = BUILD_ID) -> DeploymentOut:
        return DeploymentOut(
            id=uuid.UUID(DEPLOYMENT_ID),
            project_id=PROJECT_ID,
            build_id=uuid.UUID(build_id),
            environment="production",
            status=status,
            url="http://site.localhost:8000/",
            error="release checksum mismatch" if status == "failed" else None,
            trigger="api",
            previous_deployment_id=None,
            created_at=NOW,
            activated_at=NOW if status == "active" else None,
        )

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
            body = msgspec.json.decode(await request.read(), type=dict[str, Any])
            if body["name"] != body["name"].lower() or " " in body["name"]:
                return problem(
                    422,
                    "Invalid request",
                    "1 field is invalid",
                    [ProblemField("name", "must match ^[a-z0-9][a-z0-9-]{0,62}$")],
                )
            out = project_out(
                body["name"],
                body["repo_url"],
                branch=body.get("branch", "main"),
                build=msgspec.convert(body.get("build", {}), BuildSettings),
            )
            created = ProjectCreated(**msgspec.structs.asdict(out), webhook_secret="whsec")
            return reply(created, status=201)

        async def list_projects(request: web.Request) -> web.Response:
            if request.query.get("cursor") == "page2":
                docs = project_out("docs", "/d", id=uuid.uuid4())
                return reply(Page(items=[docs], next_cursor=None))
            return reply(Page(items=[project_out("site")], next_cursor="page2"))

        async def trigger(request: web.Request) -> web.Response:
            if request.match_info["project"] != "site":
                return problem(404, "Not found", "no project named nope")
            return reply(self.build(done=False), status=202)

        async def get_build(request: web.Request) -> web.Response:
            return reply(self.build(done=True))

        async def log_text(request: web.Request) -> web.Response:
            return web.Response(text="".join(f"{line}\n" for _, line in self.log))

        async def log_ws(request: web.Request) -> web.WebSocketResponse:
            self.ws_from_seq.append(request.query.get("from_seq", ""))
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            start = int(request.query.get("from_seq", "1"))
            for seq, (stream, line) in enumerate(self.log, start=1):
                if seq >= start:
                    frame = LogFrame(build_id=BUILD_ID, seq=seq, ts=NOW, stream=stream, line=line)
                    await ws.send_str(encode_frame(frame).decode())
            end = EndFrame(build_id=BUILD_ID, status=self.build_outcome)
            await ws.send_str(encode_frame(end).decode())
            await ws.close()
            return ws

        async def get_deployment(request: web.Request) -> web.Response:
            status = (
                self.deployment_statuses.pop(0)
                if len(self.deployment_statuses) > 1
                else (self.deployment_statuses[0])
            )
            return reply(self.deployment(status))

        async def rollback(request: web.Request) -> web.Response:
            return reply(self.deployment("pending", build_id=OLD_BUILD_ID), status=202)

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
        errors=[ProblemField("name", "must be a slug"), ProblemField("repo_url", "is required")],
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
        errors=[ProblemField("name", "must be a slug")],
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
    assert f"Created project site ({PROJECT_ID})" in out
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
    assert out[0] == f"Rolling back site: deployment {DEPLOYMENT_ID} of build {OLD_BUILD_ID}"
    assert out[-1] == "Live at http://site.localhost:8000/"


def test_unreachable_api_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: `cannot reach the API at <url>`, exit code 1."""
    from launchdeck.devservers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert cli(url, "projects", "list") == 1
    assert capsys.readouterr().err.startswith(f"error: cannot reach the API at {url}")
