"""Bounded parameter types and JSON bodies shared by the API routes.

Integer ids live in signed database columns: a larger number in a path, query or body
made the database driver overflow (a 500) instead of a "not found". Every id the API
takes is one of the types here, so a value outside the column's range is a 422 before
it reaches the database: ``1..2**63-1`` for 64-bit ids (deliveries), ``1..2**31-1``
for rule sets, whose id column is a 32-bit INTEGER on PostgreSQL.

Small JSON bodies (tenants, keys, lists) are read with :func:`json_model`: the body is
capped, parsed with :mod:`bastion.parsing.json_doc` (bounded depth and items, in a
worker thread when large) and validated off the event loop, with at most
:data:`MAX_ERRORS_SHOWN` validation errors listed.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from bastion.errors import EmptyInput, InputError
from bastion.parsing.json_doc import parse_json_async

MAX_DB_ID = 2**63 - 1
MAX_RULE_SET_ID = 2**31 - 1
MAX_ERRORS_SHOWN = 50

DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID, description="A database id (1 to 2**63-1).")]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID, description="Id (1 to 2**63-1).")]
RuleSetIdPath = Annotated[
    int, Path(ge=1, le=MAX_RULE_SET_ID, description="Rule set id (1 to 2**31-1).")
]
RuleSetIdQuery = Annotated[
    int | None, Query(ge=1, le=MAX_RULE_SET_ID, description="Rule set id (1 to 2**31-1).")
]
DbIdList = Annotated[list[DbId], Field(max_length=1000, description="At most 1000 ids.")]

M = TypeVar("M", bound=BaseModel)


def parse_id(value: str, what: str, maximum: int = MAX_DB_ID) -> int:
    """An id given as text (a form field): digits only, from 1 to ``maximum``."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 1 <= int(text) <= maximum:
        raise InputError(
            f"{what} must be a whole number from 1 to {maximum}, not {text[:40]!r}",
            code="invalid_id",
            status=422,
        )
    return int(text)


def validation_details(exc: ValidationError) -> dict[str, Any]:
    """A ValidationError as ``{"errors": [...], "more_errors": n}``, at most
    MAX_ERRORS_SHOWN errors listed."""
    errors = exc.errors(include_url=False, include_input=False)
    shown = [
        {"loc": list(e.get("loc", ())), "message": e.get("msg", "")}
        for e in errors[:MAX_ERRORS_SHOWN]
    ]
    details: dict[str, Any] = {"errors": shown}
    if len(errors) > MAX_ERRORS_SHOWN:
        details["more_errors"] = len(errors) - MAX_ERRORS_SHOWN
    return details


async def read_body(request: Request, max_bytes: int, *, code: str = "body_too_large") -> bytes:
    """The request body, refused (413 ``code``) as soon as it is over ``max_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (
        len(declared) > 18 or int(declared) > max_bytes
    ):
        raise InputError(
            f"the body is over the limit of {max_bytes} bytes", code=code, status=413
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InputError(
                f"the body is over the limit of {max_bytes} bytes", code=code, status=413
            )
    return bytes(body)


async def json_model(request: Request, model: type[M], max_bytes: int = 64 * 1024) -> M:
    """The JSON body as ``model``: capped, parsed with bounds, validated off the loop."""
    data = await parse_json_async(await read_body(request, max_bytes))
    if data is None:
        raise EmptyInput("empty body: send a JSON object")

    def validate() -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise InputError(
                "request does not validate",
                code="invalid_request",
                status=422,
                details=validation_details(exc),
            ) from None

    return await run_in_threadpool(validate)


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with :func:`json_model`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
