"""A project's running apps: `GET /api/v1/projects/{id}/apps`.

The control-api keeps no record of processes: it asks the deploy-engine, which runs them, over
core NATS request/reply (`ld.rpc.apps.report`) and answers with what it says. An engine that
does not answer within `ANSWER_TIMEOUT_S` (none running, or busy) is a 503.
"""

from __future__ import annotations

import msgspec
import nats.errors
from aiohttp import web

from launchdeck.contracts import subjects as s
from launchdeck.contracts.api import ProjectApps
from launchdeck.contracts.messages import AppsReport, AppsReportRequest
from launchdeck.control_api.api.json_io import json_response
from launchdeck.control_api.api.keys import NC
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain.errors import DomainError

ANSWER_TIMEOUT_S = 2.0


class EngineSilent(DomainError):
    status = 503
    title = "Service Unavailable"
    headers = {"Retry-After": "5"}


async def get_apps(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    question = msgspec.json.encode(AppsReportRequest(project_id=str(project.id)))
    try:
        answer = await request.app[NC].request(
            s.SUBJECT_APPS_REPORT, question, timeout=ANSWER_TIMEOUT_S
        )
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
        raise EngineSilent("the deploy-engine did not answer") from exc
    report = msgspec.json.decode(answer.data, type=AppsReport)
    return json_response(ProjectApps(project_id=project.id, instances=report.instances))


def setup_app_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/projects/{id}/apps", get_apps)
