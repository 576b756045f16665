"""HTTP handlers of the chart series of generation jobs (read scope): a job's timeline and a
project's cost per day (`domain.generation_charts`)."""

from __future__ import annotations

from aiohttp import web

from launchdeck.control_api.api.generations import load_generation
from launchdeck.control_api.api.json_io import json_response
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.api.query import query_int
from launchdeck.control_api.domain import generation_charts as charts

DEFAULT_DAYS = 30
MAX_BUCKET_S = 86_400


async def timeline(request: web.Request) -> web.Response:
    job = await load_generation(request, request.match_info["id"])
    asked = None
    if request.query.get("bucket_s"):
        asked = query_int(request, "bucket_s", default=1, minimum=1, maximum=MAX_BUCKET_S)
    async with request.app[POOL].acquire() as conn:
        return json_response(await charts.job_timeline(conn, job, bucket_s=asked))


async def costs(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    days = query_int(request, "days", default=DEFAULT_DAYS, minimum=1, maximum=charts.MAX_DAYS)
    async with request.app[POOL].acquire() as conn:
        return json_response(await charts.project_costs(conn, project.id, days=days))


def setup_generation_chart_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/generations/{id}/timeline", timeline)
    app.router.add_get("/api/v1/projects/{id}/generations/costs", costs)
