"""HTTP handlers of deployments: history, detail, deploy a build, roll back, redeploy."""

from __future__ import annotations

from aiohttp import web

from launchdeck.contracts.api import DeploymentCreate, Redeploy
from launchdeck.control_api.api.json_io import json_response, read_json
from launchdeck.control_api.api.keys import POOL
from launchdeck.control_api.api.lookup import load_of_project
from launchdeck.control_api.api.pagination import (
    decode_time_id_cursor,
    encode_cursor,
    page_request,
    paginate,
)
from launchdeck.control_api.api.present import deployment_out
from launchdeck.control_api.api.projects import load_project
from launchdeck.control_api.domain import deployments as deployments_service
from launchdeck.control_api.store import deployments
from launchdeck.control_api.store.records import Deployment


async def list_deployments(request: web.Request) -> web.Response:
    project = await load_project(request, "read")
    page = page_request(request)
    before = decode_time_id_cursor(page.cursor) if page.cursor else None
    async with request.app[POOL].acquire() as conn:
        rows = await deployments.list_page(conn, project.id, limit=page.limit + 1, before=before)
    return json_response(
        paginate(rows, page.limit, lambda d: encode_cursor(d.created_at, d.id), deployment_out)
    )


async def get_deployment(request: web.Request) -> web.Response:
    deployment = await load_of_project(
        request, request.match_info["id"], "deployment", deployments.get
    )
    return json_response(deployment_out(deployment))


async def create_deployment(request: web.Request) -> web.Response:
    project = await load_project(request, "deploy")
    body = await read_json(request, DeploymentCreate)
    async with request.app[POOL].acquire() as conn:
        deployment = await deployments_service.deploy_build(
            conn, project, body.build_id, body.environment
        )
    return _accepted(deployment)


async def rollback(request: web.Request) -> web.Response:
    project = await load_project(request, "deploy")
    async with request.app[POOL].acquire() as conn:
        deployment = await deployments_service.rollback(conn, project)
    return _accepted(deployment)


async def redeploy(request: web.Request) -> web.Response:
    """The live build again, as a new deployment: no rebuild, the current env vars."""
    project = await load_project(request, "deploy")
    body = await read_json(request, Redeploy, empty_ok=True)
    async with request.app[POOL].acquire() as conn:
        deployment = await deployments_service.redeploy(conn, project, body.environment)
    return _accepted(deployment)


def _accepted(deployment: Deployment) -> web.Response:
    response = json_response(deployment_out(deployment), status=202)
    response.headers["Location"] = f"/api/v1/deployments/{deployment.id}"
    return response


def setup_deployment_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/projects/{id}/deployments", list_deployments)
    app.router.add_post("/api/v1/projects/{id}/deployments", create_deployment)
    app.router.add_post("/api/v1/projects/{id}/rollback", rollback)
    app.router.add_post("/api/v1/projects/{id}/redeploy", redeploy)
    app.router.add_get("/api/v1/deployments/{id}", get_deployment)
