"""Every error leaves the API as JSON: {"error": {"code": ..., "message": ...}}.

Error bodies are bounded whatever the request: at most :data:`MAX_LIST_ITEMS` entries
of any list in the details (with ``<name>_omitted`` saying how many were left out),
:data:`MAX_KEYS` keys per object, strings cut at :data:`MAX_TEXT` characters, and
:data:`MAX_DEPTH` levels, so a hostile body with a million bad fields gets a short answer.
A client that went away mid-request is logged at INFO, without a traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from typing import TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from bastion.errors import BastionError, InputError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

MAX_LIST_ITEMS = 50
MAX_KEYS = 50
MAX_TEXT = 500
MAX_MESSAGE = 2000
MAX_DEPTH = 6
MAX_LOC_PARTS = 16

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}

_DISCONNECTS = (
    ClientDisconnect,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)


def is_client_disconnect(exc: BaseException) -> bool:
    """True for the errors a client causes by going away mid-request."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_client_disconnect(e) for e in exc.exceptions)
    return isinstance(exc, _DISCONNECTS)


def _text(value: str, limit: int = MAX_TEXT) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def bounded(value: object, depth: int = 0) -> object:
    """``value`` cut to a small JSON-safe size (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value)
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in islice(value.items(), MAX_KEYS):
            name = _text(str(key), 100)
            out[name] = bounded(item, depth + 1)
            if isinstance(item, list | tuple) and len(item) > MAX_LIST_ITEMS:
                out.setdefault(f"{name}_omitted", len(item) - MAX_LIST_ITEMS)
        if len(value) > MAX_KEYS:
            out["keys_omitted"] = len(value) - MAX_KEYS
        return out
    if isinstance(value, list | tuple):
        return [bounded(item, depth + 1) for item in islice(value, MAX_LIST_ITEMS)]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return _text(str(value))


def error_response(status: int, code: str, message: str, details: object = None) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": _text(message, MAX_MESSAGE)}
    if details:
        body["details"] = bounded(details)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def validation_details(errors: Sequence[Mapping[str, object]]) -> dict[str, object]:
    """``{"errors": [{"loc", "message"}, ...]}`` from pydantic/FastAPI errors, bounded."""
    out: list[dict[str, object]] = []
    for e in islice(errors, MAX_LIST_ITEMS):
        loc = e.get("loc", ())
        parts = loc if isinstance(loc, list | tuple) else (loc,)
        out.append(
            {
                "loc": [
                    p if isinstance(p, int) and not isinstance(p, bool) else _text(str(p), 100)
                    for p in islice(parts, MAX_LOC_PARTS)
                ],
                "message": _text(str(e.get("msg", "")), 300),
            }
        )
    details: dict[str, object] = {"errors": out}
    if len(errors) > MAX_LIST_ITEMS:
        details["errors_omitted"] = len(errors) - MAX_LIST_ITEMS
    return details


def validated(model: type[M], data: object, message: str, *, status: int = 422) -> M:
    """``data`` as ``model``, or an ``invalid_request`` error with its validation errors
    listed as in every error answer."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(
            message, code="invalid_request", status=status, details=validation_details(exc.errors())
        ) from None


def _first_problem(details: dict[str, object]) -> str:
    """The first validation error as one line, for a page."""
    errors = details.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        loc = ".".join(str(p) for p in errors[0].get("loc", []))
        return f"{loc}: {errors[0].get('message', '')}"
    return "request does not validate"


def _disconnected(request: Request, exc: BaseException) -> JSONResponse:
    log.info(
        "client went away during %s %s (%s)", request.method, request.url.path, type(exc).__name__
    )
    return error_response(400, "client_disconnected", "the client went away")


PageError = Callable[[Request, int, str, str, BaseException], Response | None]
"""Answers an error as a page where one is wanted (the portal), else None (JSON)."""


def install(app: FastAPI, *, page_error: PageError | None = None) -> None:
    def as_page(
        request: Request, status: int, code: str, message: str, exc: BaseException
    ) -> Response | None:
        return page_error(request, status, code, message, exc) if page_error else None

    @app.exception_handler(BastionError)
    async def _bastion(request: Request, exc: BastionError) -> Response:
        svc = getattr(request.app.state, "services", None)
        if svc is not None and 400 <= exc.status < 500:
            svc.metrics.media_errors.labels(exc.code).inc()
        page = as_page(request, exc.status, exc.code, exc.message, exc)
        if page is not None:
            return page
        return error_response(exc.status, exc.code, exc.message, exc.details or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        details = validation_details(exc.errors())
        page = as_page(request, 422, "invalid_request", _first_problem(details), exc)
        if page is not None:
            return page
        return error_response(422, "invalid_request", "request does not validate", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        page = as_page(request, exc.status_code, code, str(exc.detail), exc)
        if page is not None:
            return page
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        return _disconnected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_client_disconnect(exc):
            return _disconnected(request, exc)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")
