"""Caddy JSON for the edge: the `launchdeck` server and one route per site (pure functions).

Layout of the server's routes:

    [ {@id launchdeck-sites: subroute [ preview path routes..., project/preview host routes... ]},
      {@id launchdeck-fallback: 404 "no site here"} ]

Every site route carries an `@id`, so one site is added or replaced through `/id/<id>` without
touching the others (activation cost does not grow with the number of projects). Path-based
preview routes go first in the subroute so they win over a host route on the same host.

Hosts are owned. The base domain's names are the platform's to hand out: `<project>.<base>` is
the project's, `<build8>-<project>.<base>` its previews'; a project's custom domains never
include another of them (the control-api refuses them, and `project_hosts` drops them again, so
neither an old row nor a forged command routes one project's traffic to another). A preview's
path route, `/preview/<build>/`, matches only on its own project's `<project>.<base>`: on any
host it would put one project's preview (code from any branch) on another project's origin,
with that origin's cookies and storage. Custom domains do not get path previews either; they
are often the production origin users sign in to.

A static site is served from its release directory with: exact file, then `<path>/index.html`;
otherwise the release's `404.html` with status 404 when it has one, else `/index.html` (SPA
fallback). Whether a 404.html exists is checked by Caddy per request, so the route does not
depend on the release's content and a symlink swap alone changes what is served.

A route serves one *target*: a static release (`Static`), a running app's web process
(`Upstream`: reverse-proxied to its loopback port, WebSocket upgrades included), or a fixed
answer (`Notice`: a preview whose process was stopped, an app without a web process). For an
app, activation is the route's upstream moving from the old process's port to the new one's, by
`@id`. Caddy applies a config change by loading the whole config again; `stream_close_delay`
keeps WebSocket connections of every app open across those reloads (another project's deploy
must not drop them) — a connection to a process being replaced ends when that process stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_NAME = "launchdeck"
SITES_ID = "launchdeck-sites"
FALLBACK_ID = "launchdeck-fallback"
PROJECT_HEADER = "X-Launchdeck-Project"
BUILD_HEADER = "X-Launchdeck-Build"

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# How long an app's WebSocket (or other upgraded) connection survives a config reload.
STREAM_CLOSE_DELAY = "24h"
PREFIX_HEADER = "X-Forwarded-Prefix"

Json = dict[str, Any]


@dataclass(frozen=True)
class Static:
    """A static release, served from `root` (a release directory, or `current`)."""

    root: Path


@dataclass(frozen=True)
class Upstream:
    """A web process listening on 127.0.0.1:`port`."""

    port: int


@dataclass(frozen=True)
class Notice:
    """A fixed answer in place of a site."""

    status: int
    body: str


Target = Static | Upstream | Notice


def project_route_id(project: str) -> str:
    return f"project-{project}"


def preview_host_route_id(project: str, build_id: str) -> str:
    return f"preview-{project}-{build_id}"


def preview_path_route_id(project: str, build_id: str) -> str:
    return f"preview-path-{project}-{build_id}"


def project_hosts(project: str, base_domain: str, domains: list[str]) -> list[str]:
    """The project's own host, then its custom domains that are not platform names."""
    own = f"{project}.{base_domain}"
    hosts = [own]
    for domain in domains:
        host = domain.strip().lower().rstrip(".")
        if host and host not in hosts and not is_platform_host(host, base_domain):
            hosts.append(host)
    return hosts


def is_platform_host(host: str, base_domain: str) -> bool:
    """Whether `host` is one of the names the platform hands out or answers to itself (the
    base domain, anything under it, localhost): never a project's custom domain."""
    return host in (base_domain, "localhost") or host.endswith((f".{base_domain}", ".localhost"))


def preview_host(project: str, build_id: str, base_domain: str) -> str:
    return f"{build_id[:8].lower()}-{project}.{base_domain}"


def preview_path(build_id: str) -> str:
    return f"/preview/{build_id}"


def server_config(listen: str) -> Json:
    return {
        "listen": [listen],
        "automatic_https": {"disable": True},
        "routes": [
            {"@id": SITES_ID, "handle": [{"handler": "subroute", "routes": []}]},
            {
                "@id": FALLBACK_ID,
                "handle": [
                    {
                        "handler": "static_response",
                        "status_code": 404,
                        "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                        "body": "No site is deployed at this address.\n",
                    }
                ],
            },
        ],
    }


def initial_config(admin_listen: str, listen: str, storage_dir: Path) -> Json:
    """The whole config of a Caddy the engine starts itself (admin on a unix socket only)."""
    return {
        "admin": {"listen": admin_listen, "config": {"persist": False}},
        # Warnings and errors only: the admin API logs every request at INFO.
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "storage": {"module": "file_system", "root": str(storage_dir)},
        "apps": {"http": {"servers": {SERVER_NAME: server_config(listen)}}},
    }


def _set_header(name: str, value: str) -> Json:
    return {"handler": "headers", "response": {"set": {name: [value]}}}


def static_site_handlers(root: Path, headers: dict[str, str]) -> list[Json]:
    """Handlers serving the static release at `root` (see the module doc for the rules)."""
    file_root = str(root)
    ident = [_set_header(k, v) for k, v in headers.items()]
    return [
        {
            "handler": "subroute",
            "routes": [
                {
                    "handle": [
                        *ident,
                        {
                            "handler": "encode",
                            "encodings": {"zstd": {}, "gzip": {}},
                            "prefer": ["zstd", "gzip"],
                        },
                    ]
                },
                {
                    "match": [
                        {
                            "file": {
                                "root": file_root,
                                "try_files": [
                                    "{http.request.uri.path}",
                                    "{http.request.uri.path}/index.html",
                                ],
                            }
                        }
                    ],
                    "handle": [{"handler": "rewrite", "uri": "{http.matchers.file.relative}"}],
                },
                {
                    "match": [{"path": ["/assets/*"]}],
                    "handle": [_set_header("Cache-Control", IMMUTABLE)],
                },
                {
                    "match": [{"path": ["*.html", "*/"]}],
                    "handle": [_set_header("Cache-Control", NO_CACHE)],
                },
                {"handle": [{"handler": "file_server", "root": file_root, "pass_thru": True}]},
                {
                    "match": [{"file": {"root": file_root, "try_files": ["/404.html"]}}],
                    "terminal": True,
                    "handle": [
                        {"handler": "rewrite", "uri": "/404.html"},
                        _set_header("Cache-Control", NO_CACHE),
                        {"handler": "file_server", "root": file_root, "status_code": 404},
                    ],
                },
                {
                    "handle": [
                        {"handler": "rewrite", "uri": "/index.html"},
                        _set_header("Cache-Control", NO_CACHE),
                        {"handler": "file_server", "root": file_root},
                    ]
                },
            ],
        }
    ]


def app_handlers(port: int, headers: dict[str, str], prefix: str | None = None) -> list[Json]:
    """Handlers proxying to the web process on `port` (WebSockets included). A path preview's
    requests reach the app without their `/preview/<build>` prefix, which it is told in
    `X-Forwarded-Prefix`."""
    proxy: Json = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"127.0.0.1:{port}"}],
        "stream_close_delay": STREAM_CLOSE_DELAY,
    }
    if prefix is not None:
        proxy["headers"] = {"request": {"set": {PREFIX_HEADER: [prefix]}}}
    return [*(_set_header(k, v) for k, v in headers.items()), proxy]


def notice_handlers(notice: Notice, headers: dict[str, str]) -> list[Json]:
    return [
        *(_set_header(k, v) for k, v in headers.items()),
        {
            "handler": "static_response",
            "status_code": notice.status,
            "headers": {
                "Content-Type": ["text/plain; charset=utf-8"],
                "Cache-Control": [NO_CACHE],
            },
            "body": notice.body,
        },
    ]


def site_handlers(target: Target, headers: dict[str, str], prefix: str | None = None) -> list[Json]:
    if isinstance(target, Static):
        return static_site_handlers(target.root, headers)
    if isinstance(target, Upstream):
        return app_handlers(target.port, headers, prefix)
    return notice_handlers(target, headers)


def project_route(project: str, hosts: list[str], target: Target) -> Json:
    """The production route: the project's hosts serve `target` (for a static site, whatever
    `current` points at)."""
    return {
        "@id": project_route_id(project),
        "match": [{"host": hosts}],
        "terminal": True,
        "handle": site_handlers(target, {PROJECT_HEADER: project}),
    }


def preview_host_route(project: str, build_id: str, host: str, target: Target) -> Json:
    return {
        "@id": preview_host_route_id(project, build_id),
        "match": [{"host": [host]}],
        "terminal": True,
        "handle": site_handlers(target, {PROJECT_HEADER: project, BUILD_HEADER: build_id}),
    }


def preview_path_route(project: str, build_id: str, host: str, target: Target) -> Json:
    """`/preview/<build>/` on `host`, the project's own `<project>.<base domain>` only."""
    prefix = preview_path(build_id)
    return {
        "@id": preview_path_route_id(project, build_id),
        "match": [{"host": [host], "path": [prefix, f"{prefix}/*"]}],
        "terminal": True,
        "handle": [
            {"handler": "rewrite", "strip_path_prefix": prefix},
            *site_handlers(target, {PROJECT_HEADER: project, BUILD_HEADER: build_id}, prefix),
        ],
    }
