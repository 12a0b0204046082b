"""The OpenAPI document as the server really answers, error statuses included.

FastAPI documents the 2xx answer of each operation and a 422 with its own
``HTTPValidationError`` shape, while Bastion answers every error — validation errors
too (see :mod:`bastion.api.errors`) — as ``{"error": {"code", "message", "details"}}``
and gives 401/403/404/409/413/... that the document never mentioned. Generated clients
then have no type for an error, and a fuzzer takes every error for a broken contract.

:func:`install` replaces ``app.openapi`` with :func:`build`, which starts from FastAPI's
document and adds to every operation the error statuses it can give, all with the
named :class:`ErrorResponse` schema:

* every request passes the body guard: 413 when its body is over ``max_request_bytes``;
* an operation with a Bearer key (``security``): 401 (no, unknown or revoked key) and
  403 (the key lacks the scope, or a default-tenant admin is needed);
* with path parameters: 404 (no such object for this tenant);
* with any parameter or a body: 422 (FastAPI's validation, in Bastion's error shape);
* with query or header parameters: 400 (a value that validates but makes no sense:
  a bad cursor, an unknown state, metadata that is not a JSON object, ...);
* reading a body: 400 (unreadable: bad JSON, encoding, base64, empty), 408 (sent too
  slowly), 413, 415 (a content type it does not take), 422 (does not validate, or
  media that cannot be analysed) and 503 (overloaded, or an analyzer is unavailable);
* what only some operations do, from :data:`EXTRA_STATUSES`: 404 for a policy or
  rule set named in the query or body (or no review item left to claim, or a
  correction's target), 409 for a state or name conflict (or a review lease not held,
  or a job to correct without a result), 410 for media deleted after
  the retention period.

Operations that read their media from the raw request (``POST /v1/jobs``, pushed
stream frames) get the request body FastAPI cannot see, so clients know what to
send; those that answer an existing object with 200 instead of creating one
(:data:`ALSO_SUCCESS`) document that answer too; ``/metrics`` and the stream
thumbnail are documented as the text and JPEG they send (:data:`SUCCESS_CONTENT`),
and ``/readyz`` with the 503 it answers while not ready.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from bastion.api.inputs import MediaRef

__all__ = ["ALSO_SUCCESS", "EXTRA_STATUSES", "ErrorResponse", "build", "install"]


class ErrorBody(BaseModel):
    """What went wrong, with a stable code."""

    code: str = Field(description="Stable snake_case code, never renamed once shipped.")
    message: str = Field(description="What went wrong, for people.")
    details: dict[str, Any] | None = Field(
        None, description="More about it where there is more (e.g. the validation errors)."
    )


class ErrorResponse(BaseModel):
    """Every error answer of the API."""

    error: ErrorBody


DESCRIPTIONS: dict[int, str] = {
    400: "The request is invalid: a bad parameter value, or a body that cannot be read "
    "(bad JSON, encoding or base64, empty).",
    401: "No API key, or an unknown or revoked one (`Authorization: Bearer <key>`).",
    403: "The key lacks the scope this needs, or only a default-tenant admin may do it.",
    404: "Not found for this tenant: the object in the path, or a policy, rule set or "
    "alert that the request names.",
    408: "The request body arrived too slowly; the connection is closed.",
    409: "Conflicts with the current state (a transition it cannot make, a name in use).",
    410: "Gone: deleted after the retention period.",
    413: "The request body, or media or an item in it, is over a limit.",
    415: "The body's content type is not one this operation takes.",
    422: "The request does not validate, or the media cannot be analysed.",
    503: "Overloaded, or an analyzer or service is unavailable: retry later.",
}

BODY_STATUSES = frozenset({400, 408, 413, 415, 422, 503})

EXTRA_STATUSES: dict[tuple[str, str], frozenset[int]] = {
    # a policy named in the query, the form or the body
    ("post", "/v1/moderate"): frozenset({404}),
    ("patch", "/v1/tenant"): frozenset({404}),
    ("post", "/v1/jobs"): frozenset({404}),
    # another tenant named in the body
    ("post", "/v1/keys"): frozenset({404}),
    ("post", "/v1/tenants"): frozenset({409}),
    ("get", "/v1/jobs/{job_id}/thumbnails/{name}"): frozenset({410}),
    ("post", "/v1/jobs/{job_id}/cancel"): frozenset({409}),
    ("post", "/v1/jobs/{job_id}/pause"): frozenset({409}),
    ("post", "/v1/jobs/{job_id}/resume"): frozenset({409}),
    ("post", "/v1/jobs/{job_id}/retry"): frozenset({409, 410}),
    ("post", "/v1/rules"): frozenset({409}),
    ("post", "/v1/rules/import"): frozenset({409}),
    ("put", "/v1/rules/{rule_set_id}"): frozenset({409}),
    # a rule set, channel, alert or policy named in the query or the form
    ("post", "/v1/rules/test"): frozenset({404, 410}),
    ("post", "/v1/alerts/{alert_id}/acknowledge"): frozenset({409}),
    ("post", "/v1/alerts/{alert_id}/dismiss"): frozenset({409}),
    ("post", "/v1/alerts/{alert_id}/stop"): frozenset({409}),
    ("get", "/v1/alerts/{alert_id}/thumbnail"): frozenset({410}),
    ("post", "/v1/streams"): frozenset({409}),
    ("post", "/v1/streams/{stream_id}/frames"): frozenset({409}),
    # nothing left to claim (nothing_to_review); a lease not held, an item decided
    ("post", "/v1/reviews/claim"): frozenset({404}),
    ("post", "/v1/reviews/{review_id}/decide"): frozenset({409}),
    ("post", "/v1/reviews/{review_id}/release"): frozenset({409}),
    ("get", "/v1/reviews/{review_id}/media"): frozenset({410}),
    # a target not found (correction_target_not_found); a job without a result yet
    ("post", "/v1/corrections"): frozenset({404, 409}),
}
"""Statuses only some operations give, beyond what :func:`statuses_of` derives."""


def image_request_body(description: str, **fields: dict[str, Any]) -> dict[str, Any]:
    """The ``openapi_extra`` of an operation that reads one image as ``/v1/moderate``
    does: a multipart ``file`` or ``url`` (plus ``fields``), the raw body, or JSON."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            **fields,
                            "url": {
                                "type": "string",
                                "maxLength": 4096,
                                "description": "Instead of a file: an http(s) URL to fetch.",
                            },
                        },
                        "additionalProperties": False,
                    }
                },
                "image/*": binary,
                "application/octet-stream": binary,
                "application/json": {"schema": MediaRef.model_json_schema()},
            },
        }
    }


def _media_body(*, video: bool) -> dict[str, Any]:
    kinds = "image or video" if video else "image"
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "url": {"type": "string"},
                    "policy": {"type": "string"},
                },
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": MediaRef.model_json_schema()},
    }
    if video:
        content["video/*"] = {"schema": {"type": "string", "format": "binary"}}
    return {
        "description": f"The {kinds}: a multipart `file` (or `url`), the raw body, "
        'or JSON `{"url": ...}` / `{"base64": ...}`.',
        "content": content,
    }


ALSO_SUCCESS: dict[tuple[str, str], tuple[int, str]] = {
    ("post", "/v1/jobs"): (
        200,
        "A job with this Idempotency-Key already exists: that job, unchanged.",
    ),
    ("post", "/v1/streams"): (
        200,
        "The stream was already registered with the same channel and source: unchanged.",
    ),
}
"""A second success status of an operation, with the same body as its first."""

MEDIA_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/jobs"): _media_body(video=True),
    ("post", "/v1/streams/{stream_id}/frames"): _media_body(video=False),
}
"""Operations that read their media from the raw request, out of FastAPI's sight."""

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def statuses_of(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer with (see the module docstring)."""
    where = {p.get("in") for p in operation.get("parameters", [])}
    body = "requestBody" in operation
    found = {413}
    if operation.get("security"):
        found |= {401, 403}
    if "path" in where:
        found.add(404)
    if where or body:
        found.add(422)
    if where & {"query", "header"}:
        found.add(400)
    if body:
        found |= BODY_STATUSES
    found |= EXTRA_STATUSES.get((method, path), frozenset())
    return found


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
        }
    return response


SUCCESS_CONTENT: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/metrics"): {"text/plain": {"schema": {"type": "string"}}},
    ("get", "/v1/streams/{stream_id}/thumbnail"): {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}
    },
    ("get", "/v1/reviews/{review_id}/media"): {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "video/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
"""What operations answering with a plain ``Response`` or a file really send."""


def _special_cases(paths: dict[str, Any]) -> None:
    for (method, path), content in SUCCESS_CONTENT.items():
        operation = paths.get(path, {}).get(method)
        if operation is not None:
            operation["responses"]["200"]["content"] = content
    ready = paths.get("/readyz", {}).get("get")
    if ready is not None:
        ok = ready["responses"]["200"]
        ready["responses"]["503"] = {
            "description": "Not ready: models not loaded or the database unreachable "
            "(the same body as 200, with `status` `not_ready`).",
            "content": ok.get("content", {"application/json": {"schema": {}}}),
        }


def _drop_unused(schema: dict[str, Any], names: tuple[str, ...]) -> None:
    """Remove component schemas no longer referenced (FastAPI's own 422 shapes)."""
    components = schema["components"]["schemas"]
    for name in names:
        entry = components.pop(name, None)
        if entry is not None and f'"#/components/schemas/{name}"' in json.dumps(schema):
            components[name] = entry


def build(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with every operation's error responses (cached on the app)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = FastAPI.openapi(app)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorResponse"] = error_schema
    paths: dict[str, Any] = schema.get("paths", {})
    for path, item in paths.items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            media = MEDIA_BODIES.get((method, path))
            if media is not None and "requestBody" not in operation:
                operation["requestBody"] = media
            responses = operation.setdefault("responses", {})
            also = ALSO_SUCCESS.get((method, path))
            if also is not None:
                first = next(v for k, v in responses.items() if k.startswith("2"))
                responses[str(also[0])] = {**first, "description": also[1]}
            for status in sorted(statuses_of(method, path, operation)):
                responses[str(status)] = _error_response(status)
    _special_cases(paths)
    _drop_unused(schema, ("HTTPValidationError", "ValidationError"))
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi`` (and so ``/openapi.json`` and the docs) use :func:`build`."""

    def openapi() -> dict[str, Any]:
        return build(app)

    app.openapi = openapi  # type: ignore[method-assign]
