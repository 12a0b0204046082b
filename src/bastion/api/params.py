"""Bounded parameter types and JSON bodies shared by the API routes.

Integer ids live in signed database columns: a larger number in a path, query or body
made the database driver overflow (a 500) instead of a "not found". Every id the API
takes is one of the types here, so a value outside the column's range is a 422 before
it reaches the database: ``1..2**63-1`` for 64-bit ids (deliveries), ``1..2**31-1``
for rule sets, whose id column is a 32-bit INTEGER on PostgreSQL.

Small JSON bodies (tenants, keys, lists) are read with :func:`json_model`: the body is
capped, parsed with :mod:`bastion.parsing.json_doc` (bounded depth and items, in a
worker thread when large) and validated off the event loop; its validation errors are
listed as in every error answer (bounded, :func:`bastion.api.errors.validation_details`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, BeforeValidator, Field

from bastion.api.errors import validated
from bastion.api.inputs import read_body
from bastion.errors import EmptyInput, InputError
from bastion.parsing.json_doc import parse_json_async

MAX_DB_ID = 2**63 - 1
MAX_RULE_SET_ID = 2**31 - 1

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

_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_only(value: object) -> object:
    """Refuse numbers: pydantic would read them as Unix times, which the document (and
    every client reading it) takes for ISO 8601 date-times only."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if is_number or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("give a date-time in ISO 8601 (e.g. 2026-12-02T20:25:58Z), not a number")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]
SinceQuery = Annotated[
    IsoDatetime | None,
    Query(
        description="Only what changed at or after this time (ISO 8601, e.g. 2026-12-02T20:25:58Z)."
    ),
]


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


async def json_model(request: Request, model: type[M], max_bytes: int = 64 * 1024) -> M:
    """The JSON body as ``model``: capped, parsed with bounds, validated off the loop."""
    data = await parse_json_async(
        await read_body(request, max_bytes, what="the JSON body", code="body_too_large")
    )
    if data is None:
        raise EmptyInput("empty body: send a JSON object")

    return await run_in_threadpool(validated, model, data, "request does not validate")


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` with :func:`json_model`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
