"""Generation job pages: a project's jobs (with its cost per day and the new-job form), one job
(live progress, its timeline chart, items, cancel, export, publish), and the small JSON and
file routes their scripts and links use, each read through the API with the session's token."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from launchdeck.contracts.api import (
    GenerationCosts,
    GenerationItemOut,
    GenerationOut,
    GenerationPublished,
    Page,
    ProjectOut,
    TemplateOut,
)
from launchdeck.contracts.statuses import GENERATION_ACTIVE
from launchdeck.control_api.dashboard.client import Api, ApiError
from launchdeck.control_api.dashboard.forms import Form, text
from launchdeck.control_api.dashboard.render import redirect, render
from launchdeck.control_api.dashboard.session import Session
from launchdeck.control_api.dashboard.state import project_path

JOBS_SHOWN = 50
ITEMS_PER_PAGE = 25
TEMPLATES_SHOWN = 200
COST_DAYS = 30
EXPORT_FORMATS = ("jsonl", "csv", "parquet")
# What the browser needs of the API's export answer (its type and file name).
EXPORT_HEADERS = ("Content-Type", "Content-Disposition")
FORM_FIELDS = (
    "template",
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "rows",
    "group_by",
    "concurrency",
    "budget_usd",
    "price_in",
    "price_out",
    "max_tokens",
)


def job_path(job_id: str) -> str:
    return f"/api/v1/generations/{quote(job_id, safe='')}"


def page_of(job_id: object) -> str:
    return f"/generations/{quote(str(job_id), safe='')}"


# --- a project's jobs -------------------------------------------------------------------------


async def _list_page(
    request: web.Request,
    session: Session,
    api: Api,
    *,
    values: dict[str, str],
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    path = project_path(request.match_info["name"])
    project = await api.get(path, ProjectOut)
    jobs, costs, templates = await asyncio.gather(
        api.get(f"{path}/generations", Page[GenerationOut], limit=str(JOBS_SHOWN)),
        api.get(f"{path}/generations/costs", GenerationCosts, days=str(COST_DAYS)),
        api.get("/api/v1/templates", Page[TemplateOut], limit=str(TEMPLATES_SHOWN)),
    )
    chart = {
        "days": [d.day for d in costs.days],
        "cost": [float(d.cost_usd) for d in costs.days],
        "items": [d.items for d in costs.days],
    }
    return render(
        request,
        "generations.html",
        session,
        status=status,
        error=error,
        project=project,
        jobs=jobs.items,
        costs=costs,
        cost_chart=chart,
        templates=templates.items,
        values=values,
    )


async def list_generations(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    return await _list_page(
        request, session, api, values={"provider": "ollama", "concurrency": "4"}
    )


def _rows(raw: str) -> list[dict[str, Any]]:
    """The items: a JSON array of objects, or one object per line (JSON Lines)."""
    raw = raw.strip()
    if not raw:
        raise ApiError(
            422,
            "Unprocessable Content",
            "rows: give at least one row (a JSON object), or upload a rows file",
        )
    try:
        parsed: Any = (
            json.loads(raw)
            if raw.startswith("[")
            else [json.loads(line) for line in raw.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as exc:
        raise ApiError(
            422, "Unprocessable Content", f"rows: not JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
        raise ApiError(422, "Unprocessable Content", "rows: every row must be a JSON object")
    return parsed


def rows_file(form: Form) -> web.FileField | None:
    """The uploaded rows file, if one was chosen (with none, browsers send an empty part with an
    empty file name, which aiohttp reads as a plain value)."""
    value = form.get("rows_file")
    return value if isinstance(value, web.FileField) and value.filename else None


def _number(form: Form, name: str) -> int | None:
    value = text(form, name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(422, "Unprocessable Content", f"{name}: must be a whole number") from None


def create_body(form: Form, *, inline_rows: bool = True) -> dict[str, Any]:
    """The API's `GenerationCreate` from the form: empty fields are left to the API's defaults;
    without `inline_rows` the rows come as an uploaded file, not in the body."""
    model: dict[str, Any] = {
        "provider": text(form, "provider") or "ollama",
        "name": text(form, "model"),
    }
    for name in ("base_url", "api_key_env"):
        if value := text(form, name):
            model[name] = value
    body: dict[str, Any] = {"template": text(form, "template"), "model": model}
    if inline_rows:
        body["rows"] = _rows(text(form, "rows"))
    if group_by := text(form, "group_by"):
        body["group_by"] = group_by
    limits: dict[str, Any] = {}
    if (concurrency := _number(form, "concurrency")) is not None:
        limits["concurrency"] = concurrency
    if budget := text(form, "budget_usd"):
        limits["budget_usd"] = budget
    if limits:
        body["limits"] = limits
    if (max_tokens := _number(form, "max_tokens")) is not None:
        body["parameters"] = {"max_tokens": max_tokens}
    price_in, price_out = text(form, "price_in"), text(form, "price_out")
    if price_in or price_out:
        body["price"] = {"input_per_mtok": price_in or "0", "output_per_mtok": price_out or "0"}
    return body


async def _upload_form(form: Form, upload: web.FileField) -> aiohttp.FormData:
    """The API's multipart create: the job as the `spec` part, the file as the `rows` part (the
    API picks its parser by the file's name). The file is already bounded by the dashboard's
    form limit (the app's client_max_size), so it is read whole, off the event loop."""
    if text(form, "rows"):
        raise ApiError(
            422, "Unprocessable Content", "rows: give the rows as JSON or as a file, not both"
        )
    spec = create_body(form, inline_rows=False)
    content = await asyncio.to_thread(upload.file.read)
    data = aiohttp.FormData()
    data.add_field("spec", json.dumps(spec), content_type="application/json")
    data.add_field("rows", content, filename=upload.filename, content_type=upload.content_type)
    return data


async def create_generation(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    form = await request.post()
    path = project_path(request.match_info["name"])
    try:
        if (upload := rows_file(form)) is not None:
            data = await _upload_form(form, upload)
            job = await api.send_form(f"{path}/generations", GenerationOut, data)
        else:
            job = await api.send("POST", f"{path}/generations", GenerationOut, create_body(form))
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        values = {name: text(form, name) for name in FORM_FIELDS}
        return await _list_page(
            request, session, api, values=values, status=exc.status, error=exc.detail
        )
    return redirect(page_of(job.id))


# --- one job ----------------------------------------------------------------------------------


async def _items(api: Api, job_id: str, cursor: str) -> Page[GenerationItemOut]:
    params = {"limit": str(ITEMS_PER_PAGE)}
    if cursor:
        params["cursor"] = cursor
    return await api.get(f"{job_path(job_id)}/items", Page[GenerationItemOut], **params)


async def show_generation(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    job_id = request.match_info["id"]
    cursor = request.query.get("cursor", "")
    job = await api.get(job_path(job_id), GenerationOut)
    project, items = await asyncio.gather(
        api.get(project_path(job.project_id), ProjectOut), _items(api, job_id, cursor)
    )
    return render(
        request,
        "generation.html",
        session,
        job=job,
        project=project,
        items=items,
        cursor=cursor,
        active=job.status in GENERATION_ACTIVE,
        formats=EXPORT_FORMATS,
    )


async def items_fragment(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    """The items table alone (the page's script fetches it again as items finish)."""
    job_id = request.match_info["id"]
    job = await api.get(job_path(job_id), GenerationOut)
    items = await _items(api, job_id, request.query.get("cursor", ""))
    return render(
        request,
        "_generation_items.html",
        session,
        job=job,
        items=items,
        cursor=request.query.get("cursor", ""),
    )


async def timeline(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    """The API's timeline as it is, for the page's chart (the JSON API takes no cookie)."""
    params = {}
    if bucket := request.query.get("bucket_s"):
        params["bucket_s"] = bucket
    raw = await api.call("GET", f"{job_path(request.match_info['id'])}/timeline", params=params)
    response = web.Response(body=raw, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


async def export(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    fmt = request.query.get("format", "jsonl")
    params = {"format": fmt}
    if status := request.query.get("status"):
        params["status"] = status
    path = f"{job_path(request.match_info['id'])}/export"
    return await api.relay(request, path, params, headers=EXPORT_HEADERS)


async def cancel(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    job = await api.send("POST", f"{job_path(request.match_info['id'])}/cancel", GenerationOut)
    return redirect(page_of(job.id))


async def publish(request: web.Request, session: Session, api: Api) -> web.StreamResponse:
    form = await request.post()
    body: dict[str, Any] = {"environment": text(form, "environment") or "production"}
    for name in ("project", "step"):
        if value := text(form, name):
            body[name] = value
    published = await api.send(
        "POST", f"{job_path(request.match_info['id'])}/publish", GenerationPublished, body
    )
    return redirect(f"/projects/{published.project_id}")
