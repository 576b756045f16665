"""Reading submitted forms: trimmed text fields, and the build settings every project form has."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]

# The build settings the forms edit (`BuildSettings`); empty means "detect it".
BUILD_FIELDS = (
    "root_dir",
    "install_command",
    "build_command",
    "output_dir",
    "start_command",
    "health_path",
    "dockerfile",
)


def text(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def texts(form: Form, name: str) -> list[str]:
    return [v.strip() for v in form.getall(name, []) if isinstance(v, str) and v.strip()]


def build_settings(form: Form, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The project's build settings with the form's fields applied over `current` (which keeps
    what the form does not show: timeout, build args)."""
    settings = dict(current or {})
    for name in BUILD_FIELDS:
        if name not in form:
            continue
        value = text(form, name)
        if value:
            settings[name] = value
        else:
            settings.pop(name, None)
    return settings


def lines(form: Form, name: str) -> list[str]:
    value = form.get(name)
    if not isinstance(value, str):
        return []
    return [line.strip() for line in value.splitlines() if line.strip()]
