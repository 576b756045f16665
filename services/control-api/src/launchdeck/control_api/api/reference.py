"""The API reference page (`GET /api/docs`): the OpenAPI document rendered as one HTML page.

Server-side and self-contained — no script, no stylesheet or font from a CDN — so it works
offline, behind a strict Content-Security-Policy and in a text browser. Every piece of text from
the document is escaped (`html.escape`), descriptions included.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d1d1f; }
code, .path { font-family: ui-monospace, monospace; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.5rem; }
section.op { border: 1px solid #e3e3e3; border-radius: 6px; padding: .6rem 1rem; margin: 1rem 0; }
.method { display: inline-block; min-width: 4.5rem; font-weight: 700; }
table { border-collapse: collapse; margin: .4rem 0; }
td, th { text-align: left; padding: .15rem .8rem .15rem 0; vertical-align: top; }
.muted { color: #666; }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


_CODE = re.compile(r"`([^`]+)`")


def _prose(value: object) -> str:
    """A description: escaped, then its `code` spans (markdown backticks) set as code."""
    return _CODE.sub(r"<code>\1</code>", _e(value))


def type_text(schema: dict[str, Any] | bool) -> str:
    """A JSON Schema as a short type expression (`string (uuid)`, `array of BuildOut`), escaped;
    references link to their schema on the page."""
    if isinstance(schema, bool):
        return "anything" if schema else "nothing"
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f'<a href="#schema-{_e(name)}">{_e(name)}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_text(s) for s in schema[key])
    if "enum" in schema:
        return " | ".join(_e(repr(v) if isinstance(v, str) else v) for v in schema["enum"])
    if "const" in schema:
        return _e(repr(schema["const"]))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {type_text(schema.get('items', True))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {type_text(schema['additionalProperties'])}"
    text = _e(" | ".join(kind) if isinstance(kind, list) else kind)
    if "format" in schema:
        text += f" ({_e(schema['format'])})"
    return text


def _constraints(schema: dict[str, Any]) -> str:
    shown = []
    for key in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "default"):
        if key in schema:
            shown.append(f"{key} {schema[key]!r}")
    if "pattern" in schema:
        shown.append(f"pattern {schema['pattern']}")
    return _e(", ".join(shown))


def _fields_table(schema: dict[str, Any]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return ""
    required = set(schema.get("required", []))
    rows = []
    for name, prop in properties.items():
        need = "required" if name in required else "optional"
        note = _prose(prop.get("description", "")) if isinstance(prop, dict) else ""
        extra = _constraints(prop) if isinstance(prop, dict) else ""
        rows.append(
            f"<tr><td><code>{_e(name)}</code></td><td>{type_text(prop)}</td>"
            f'<td class="muted">{need}</td><td>{note} <span class="muted">{extra}</span></td></tr>'
        )
    return "<table>" + "".join(rows) + "</table>"


def _media_text(content: dict[str, Any]) -> str:
    return ", ".join(
        f"<code>{_e(media)}</code> {type_text(spec.get('schema', True))}"
        for media, spec in content.items()
    )


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<section class="op" id="{_e(op.get("operationId", ""))}">',
        f'<div><span class="method">{_e(method.upper())}</span>'
        f'<span class="path">{_e(path)}</span></div>',
        f"<p><strong>{_e(op.get('summary', ''))}</strong></p>",
    ]
    if op.get("description"):
        parts.append(f"<p>{_prose(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
            f"<td>{type_text(p.get('schema', True))}</td><td>{_prose(p.get('description', ''))} "
            f'<span class="muted">{_constraints(p.get("schema", {}))}</span></td></tr>'
            for p in params
        )
        parts.append(f"<p>Parameters</p><table>{rows}</table>")
    body = op.get("requestBody")
    if body:
        need = "required" if body.get("required") else "optional"
        parts.append(f"<p>Body ({need}): {_media_text(body.get('content', {}))}</p>")
    rows = "".join(
        f"<tr><td><code>{_e(status)}</code></td><td>{_prose(resp.get('description', ''))}</td>"
        f"<td>{_media_text(resp.get('content', {}))}</td></tr>"
        for status, resp in op.get("responses", {}).items()
    )
    parts.append(f"<p>Responses</p><table>{rows}</table></section>")
    return "\n".join(parts)


def render_reference(document: dict[str, Any]) -> str:
    """The whole page: the document's info, its routes by tag, then every schema's fields."""
    info = document.get("info", {})
    by_tag: dict[str, list[str]] = {t["name"]: [] for t in document.get("tags", [])}
    for path, methods in document.get("paths", {}).items():
        for method, op in methods.items():
            for tag in op.get("tags", ["other"]):
                by_tag.setdefault(tag, []).append(_operation(method, path, op))
    toc = "".join(f'<li><a href="#tag-{_e(tag)}">{_e(tag)}</a></li>' for tag in by_tag)
    sections = "".join(
        f'<h2 id="tag-{_e(tag)}">{_e(tag)}</h2>' + "".join(ops) for tag, ops in by_tag.items()
    )
    schemas = document.get("components", {}).get("schemas", {})
    schema_parts = []
    for name, schema in schemas.items():
        schema_parts.append(
            f'<section class="op" id="schema-{_e(name)}"><p><strong>{_e(name)}</strong></p>'
            + (f"<p>{_prose(schema['description'])}</p>" if schema.get("description") else "")
            + (_fields_table(schema) or f"<p>{type_text(schema)}</p>")
            + "</section>"
        )
    title = _e(info.get("title", "API"))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f'<h1>{title} <span class="muted">v{_e(info.get("version", ""))}</span></h1>'
        f"<p>{_prose(info.get('description', ''))}</p>"
        '<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> '
        "(OpenAPI 3.1).</p>"
        f'<ul>{toc}<li><a href="#schemas">schemas</a></li></ul>'
        f'{sections}<h2 id="schemas">schemas</h2>{"".join(schema_parts)}</body></html>'
    )
