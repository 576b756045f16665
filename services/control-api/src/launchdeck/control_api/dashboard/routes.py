"""The dashboard's routes, all named `dashboard.*` (`api.auth.OWN_SESSION_PREFIX`): the API's
bearer-token check leaves them to `guard.signed_in`, and the API's route tables leave them out."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from launchdeck.control_api.api.auth import OWN_SESSION_PREFIX
from launchdeck.control_api.dashboard import apps, builds, deploys, env, projects, sign_in
from launchdeck.control_api.dashboard import generations as gen
from launchdeck.control_api.dashboard.client import http_session
from launchdeck.control_api.dashboard.guard import PageHandler, signed_in
from launchdeck.control_api.dashboard.render import setup_templates

STATIC_DIR = Path(__file__).parent / "static"


def is_dashboard_route(route: web.AbstractRoute) -> bool:
    """One of the dashboard's routes (for the API's route tables, which list only the API's)."""
    return route.name is not None and route.name.startswith(OWN_SESSION_PREFIX)


def setup_dashboard_routes(app: web.Application) -> None:
    setup_templates(app)
    app.cleanup_ctx.append(http_session)
    sign_in_page = app.router.add_resource("/sign-in", name=f"{OWN_SESSION_PREFIX}sign_in")
    sign_in_page.add_route("GET", sign_in.sign_in_form)
    sign_in_page.add_route("POST", sign_in.sign_in)
    app.router.add_resource("/sign-out", name=f"{OWN_SESSION_PREFIX}sign_out").add_route(
        "POST", sign_in.sign_out
    )
    for name, path, handlers in PAGES:
        resource = app.router.add_resource(path, name=f"{OWN_SESSION_PREFIX}{name}")
        for method, handler in handlers.items():
            resource.add_route(method, signed_in(handler))
    app.router.add_static("/static/", STATIC_DIR, name=f"{OWN_SESSION_PREFIX}static")


# (route name, path, handler by method): every one needs a signed-in session.
PAGES: list[tuple[str, str, dict[str, PageHandler]]] = [
    ("projects", "/projects", {"GET": projects.list_projects, "POST": projects.create_project}),
    ("project", "/projects/{name}", {"GET": projects.show_project}),
    ("project_live", "/projects/{name}/live", {"GET": projects.live_fragment}),
    (
        "settings",
        "/projects/{name}/settings",
        {"GET": projects.show_settings, "POST": projects.save_settings},
    ),
    ("delete_project", "/projects/{name}/delete", {"POST": projects.delete_project}),
    ("deploy", "/projects/{name}/builds", {"POST": deploys.deploy}),
    ("rollback", "/projects/{name}/rollback", {"POST": deploys.rollback}),
    ("promote", "/projects/{name}/promote", {"POST": deploys.promote}),
    ("redeploy", "/projects/{name}/redeploy", {"POST": deploys.redeploy}),
    ("apps", "/projects/{name}/apps", {"GET": apps.show_apps}),
    ("apps_table", "/projects/{name}/apps/table", {"GET": apps.apps_table}),
    ("env", "/projects/{name}/env", {"GET": env.show_env, "POST": env.set_var}),
    ("env_delete", "/projects/{name}/env/delete", {"POST": env.delete_var}),
    ("build", "/builds/{id}", {"GET": builds.show_build}),
    ("build_log", "/builds/{id}/log.txt", {"GET": builds.download_log}),
    ("cancel_build", "/builds/{id}/cancel", {"POST": builds.cancel}),
    (
        "generations",
        "/projects/{name}/generations",
        {"GET": gen.list_generations, "POST": gen.create_generation},
    ),
    ("generation", "/generations/{id}", {"GET": gen.show_generation}),
    ("generation_items", "/generations/{id}/items", {"GET": gen.items_fragment}),
    ("generation_timeline", "/generations/{id}/timeline.json", {"GET": gen.timeline}),
    ("generation_export", "/generations/{id}/export", {"GET": gen.export}),
    ("cancel_generation", "/generations/{id}/cancel", {"POST": gen.cancel}),
    ("publish_generation", "/generations/{id}/publish", {"POST": gen.publish}),
]
