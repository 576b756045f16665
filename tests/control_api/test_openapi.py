"""The API description: one table (`api.openapi.ROUTES`) covers every route of the app, the
document it makes is valid OpenAPI 3.1 whose schemas are valid JSON Schema 2020-12 built from
the request and response types, and `/api/docs` renders it (escaped) without a token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec

from launchdeck.contracts.api import ProjectCreate
from launchdeck.control_api.api.openapi import ROUTES, openapi_document
from launchdeck.control_api.api.reference import render_reference
from launchdeck.control_api.dashboard.routes import is_dashboard_route
from tests.control_api.support import Api

# The OpenAPI 3.1 document schema (Apache-2.0, from OAI/OpenAPI-Specification; see $comment).
OAS_31_SCHEMA = json.loads((Path(__file__).parent / "data" / "openapi-3.1-schema.json").read_text())
METHODS = ("get", "put", "post", "delete", "patch")


def test_the_table_lists_every_route(api: Api) -> None:
    """A route missing from the description (or described but gone from the app) fails."""
    app_routes = {
        (r.method, r.resource.canonical)
        for r in api.client.app.router.routes()
        # The dashboard's pages are no API routes: test_dashboard*.py covers their sessions.
        if r.resource is not None and r.method != "HEAD" and not is_dashboard_route(r)
    }
    described = [(r.method, r.path) for r in ROUTES]
    assert len(described) == len(set(described)), "a route is described twice"
    assert app_routes - set(described) == set(), "routes the description lacks"
    assert set(described) - app_routes == set(), "described routes the app lacks"


async def test_the_document_is_public_and_valid_openapi_31(api: Api) -> None:
    """Served without a token; the document schema of OpenAPI 3.1 accepts it."""
    api.token = None
    reply = await api.call("GET", "/api/v1/openapi.json")
    assert reply.status == 200, reply.body
    document = reply.body
    assert document["openapi"] == "3.1.0"
    assert {"info", "paths", "components"} <= set(document)
    validator = jsonschema_rs.Draft202012Validator(OAS_31_SCHEMA, validate_formats=True)
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every Schema Object of the document outside components: parameters' and media types'."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                found.append(value)
            else:
                found.extend(_schemas(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_schemas(item))
    return found


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        return {node["$ref"]} if "$ref" in node else set().union(*map(_refs, node.values()))
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    """Components and inline schemas pass the 2020-12 metaschema; every `$ref` resolves."""
    document = openapi_document()
    components = document["components"]["schemas"]
    for schema in [*components.values(), *_schemas(document["paths"])]:
        jsonschema_rs.meta.validate(schema)
    prefix = "#/components/schemas/"
    refs = _refs(document)
    assert all(ref.startswith(prefix) for ref in refs), refs
    assert {ref.removeprefix(prefix) for ref in refs} <= set(components)
    # Validating against a component resolves its references inside the document.
    validator = jsonschema_rs.validator_for({**document, "$ref": prefix + "Problem"})
    assert validator.is_valid({"title": "Not Found", "status": 404})
    assert not validator.is_valid({"title": "Not Found"})


def test_bodies_are_the_contract_types() -> None:
    """The request schema is msgspec's own schema of the type the handler decodes with:
    unknown fields refused, patterns and limits as validated."""
    document = openapi_document()
    operation = document["paths"]["/api/v1/projects"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ProjectCreate"
    _, components = msgspec.json.schema_components(
        [ProjectCreate], ref_template="#/components/schemas/{name}"
    )
    assert document["components"]["schemas"]["ProjectCreate"] == components["ProjectCreate"]
    assert components["ProjectCreate"]["additionalProperties"] is False
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProjectCreated"
    }
    assert operation["responses"]["422"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }


def test_every_route_states_access_and_errors() -> None:
    """Public routes need no token; every other one names the bearer scheme (by default), and
    answers 401 and 503 as problems; routes with a body answer 400, 413 and 422."""
    document = openapi_document()
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["x-scope"] == route.scope
        responses = operation["responses"]
        assert str(route.status) in responses
        if route.scope in ("public", "signature"):
            assert operation["security"] == []
        else:
            assert "security" not in operation  # the document's default: bearer or ?token=
            assert {"401", "503"} <= set(responses)
        if route.body is not None:
            assert {"400", "413", "422"} <= set(responses)
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert names == [s.strip("{}") for s in route.path.split("/") if s.startswith("{")]
    assert document["components"]["securitySchemes"]["bearer"]["bearerFormat"] == "JWT"


async def test_the_reference_page_lists_every_route(api: Api) -> None:
    api.token = None
    reply = await api.call("GET", "/api/docs")
    assert reply.status == 200
    assert reply.content_type.startswith("text/html")
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = reply.body
    # Self-contained: no script, nothing loaded from elsewhere.
    assert "<script" not in page
    assert "<link" not in page
    assert "src=" not in page
    for route in ROUTES:
        anchor = (
            f'id="{openapi_document()["paths"][route.path][route.method.lower()]["operationId"]}"'
        )
        assert anchor in page, route
    assert 'id="schema-ProjectCreate"' in page
    assert "<code>webhook_secret</code>" in page


def test_the_reference_page_escapes_the_document() -> None:
    """Text from the document never becomes markup: every string below carries a tag."""
    evil = [f"<evil{i} x='\"'>" for i in range(9)]
    hostile = {
        "info": {"title": evil[0], "version": evil[1], "description": f"`{evil[2]}`"},
        "tags": [{"name": evil[3]}],
        "paths": {
            f"/x/{{{evil[4]}}}": {
                "get": {
                    "tags": [evil[3]],
                    "summary": "a & b",
                    "parameters": [{"name": evil[5], "in": "query", "schema": {"enum": [evil[6]]}}],
                    "responses": {"200": {"description": evil[7]}},
                }
            }
        },
        "components": {"schemas": {evil[8]: {"type": "object", "properties": {evil[0]: {}}}}},
    }
    page = render_reference(hostile)
    assert "<evil" not in page
    assert "&lt;evil0 x=&#x27;&quot;&#x27;&gt;" in page
    assert "a &amp; b" in page
    assert "<code>&lt;evil2 x=&#x27;&quot;&#x27;&gt;</code>" in page  # a `code` span, escaped


def test_every_request_type_forbids_unknown_fields() -> None:
    """One rule for every body the API decodes into a type of ours: a field it does not know is
    a 422 (a typo such as `deplyo` must not be silently ignored). Responses stay open, so
    clients read them whatever fields are added later."""
    for route in ROUTES:
        if route.body is None:
            continue
        members = getattr(route.body, "__args__", None) or (route.body,)
        for member in members:
            config = getattr(member, "__struct_config__", None)
            if config is None:  # UnsetType and the like in a union
                continue
            assert config.forbid_unknown_fields, (route.method, route.path, member)
