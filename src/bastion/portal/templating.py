"""Rendering pages: one Jinja2 environment with autoescaping on for every template.

Everything a template prints is escaped unless a template says otherwise, and none
does: text that came from media or people (OCR lines, QR payloads, stream names,
notes) is shown as text, never run. ``render`` passes the signed-in person and their
CSRF token to every page; ``static_url`` names files with their content digest so
browsers can cache them for good.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bastion import __version__

_HERE = Path(str(resources.files("bastion.portal")))
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"


@cache
def _digest(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The URL of a static file, with its content digest (cache busting)."""
    return f"/portal/static/{name}?v={_digest(name)}"


def _when(value: datetime | None) -> str:
    """A time as ISO 8601 UTC (the browser shows it in the person's zone)."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _tojson_attr(value: Any) -> str:
    """JSON for a ``data-`` attribute (autoescaping makes it safe there)."""
    return json.dumps(value, separators=(",", ":"), default=str)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.globals["version"] = __version__
    env.filters["when"] = _when
    env.filters["json_attr"] = _tojson_attr
    return env


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A page or fragment, with the person (if signed in) and the request in context."""
    values: dict[str, Any] = {
        "request": request,
        "person": getattr(request.state, "person", None),
        "path": request.url.path,
    }
    values.update(context or {})
    html = environment().get_template(template).render(values)
    return HTMLResponse(html, status_code=status)
