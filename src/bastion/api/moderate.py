"""POST /v1/moderate and /v1/moderate/batch: synchronous image moderation.

Both read their body before they take an analysis slot (a full server refuses before
reading; a slow sender never holds a slot), count its bytes in the budget of bodies in
memory, and parse JSON with bounds. The batch body is at most ``max_batch_items`` inline
images (and never more than ``max_request_bytes``).

``POST /v1/moderate`` keeps nothing unless asked: with ``review=true`` a result whose
decision is ``review`` is queued for review (:meth:`ReviewService.enqueue_upload
<bastion.review.service.ReviewService.enqueue_upload>`). The image's bytes, already
read within the upload limit, go to the job media store (content-addressed), which
retention keeps while the item is undecided; the answer names the item in the
``Bastion-Review-Id`` header. The same bytes under the same policy (name and version)
are one item per tenant: posting them again answers that item's id.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from bastion.api.auth import Moderator
from bastion.api.errors import bounded, validated
from bastion.api.inputs import (
    MediaInput,
    MediaRef,
    check_query,
    declared_length,
    from_ref,
    inline_json_bytes,
    is_json,
    read_body,
    receive_single,
    resolve,
)
from bastion.api.limits import Held
from bastion.api.openapi import image_request_body
from bastion.api.services import Services, services
from bastion.config import Settings
from bastion.errors import BastionError, InputError, MediaTooLarge, UnsupportedMediaType
from bastion.parsing.json_doc import parse_json_async
from bastion.results import ModerationResult
from bastion.review.tables import ReviewItem
from bastion.store.repo import Principal

router = APIRouter(prefix="/v1", tags=["moderation"])

_IMAGE_BODY = image_request_body(
    "The image as a multipart `file`, the raw body (image/*), "
    'or JSON `{"url": ...}` / `{"base64": ...}`.',
    policy={
        "type": "string",
        "maxLength": 64,
        "description": "Policy name (as the query parameter; "
        "giving both with different values is 422).",
    },
)


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[MediaRef] = Field(min_length=1, description="Images by URL or base64.")
    policy: str | None = Field(None, max_length=64, description="Default policy for all items.")
    review: StrictBool = Field(
        False,
        description="Queue each item whose decision is `review` for review, as "
        "`POST /v1/moderate?review=true` does; its `review_id` names the item.",
    )


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` written in place (OpenAPI resolves ``$ref``
    against the whole document, not against the schema)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "description": "Images by URL or base64; at most `max_batch_items` of them.",
        "content": {"application/json": {"schema": _inline_refs(BatchRequest.model_json_schema())}},
    }
}
BATCH_MAX_DEPTH = 5


def batch_max_bytes(settings: Settings) -> int:
    """Largest batch body: ``max_batch_items`` inline images, at most ``max_request_bytes``."""
    per_item = inline_json_bytes(settings.limits.max_bytes)
    return min(settings.max_request_bytes, settings.max_batch_items * per_item)


class BatchItem(BaseModel):
    index: int
    id: str | None = None
    result: ModerationResult | None = None
    error: dict[str, Any] | None = None
    review_id: str | None = Field(
        None, description="With `review: true` and a `review` result: its review item."
    )


class BatchResponse(BaseModel):
    results: list[BatchItem]


async def moderate_input(svc: Services, who: Principal, item: MediaInput) -> ModerationResult:
    policy, lists = await run_in_threadpool(svc.policies.resolve, who.tenant_id, item.policy)
    async with svc.inflight:
        return await svc.moderation.moderate_bytes(
            item.data,
            policy,
            tenant=who.tenant_id,
            extra_lists=lists,
            content_type=item.content_type,
            store=True,
            source="api",
        )


REVIEW_HEADER = "Bastion-Review-Id"
_REVIEW_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            REVIEW_HEADER: {
                "description": "With `review=true` and a `review` result: the review item "
                "of the image (`GET /v1/reviews/{id}`), queued now or by an earlier call.",
                "schema": {"type": "string"},
            }
        }
    }
}


async def keep_for_review(
    svc: Services, who: Principal, data: bytes, result: ModerationResult
) -> ReviewItem | None:
    """Store ``data`` in the job media store and queue ``result`` for review when its
    decision is ``review`` (None otherwise)."""
    if result.decision != "review":
        return None
    stored = await run_in_threadpool(svc.jobs.media.store, data)
    queued = await run_in_threadpool(
        svc.review.enqueue_upload, who.tenant_id, result.model_dump(mode="json"), stored.sha256
    )
    return queued[0] if queued is not None else None


@router.post(
    "/moderate",
    response_model=ModerationResult,
    openapi_extra=_IMAGE_BODY,
    responses=_REVIEW_ANSWER,
    summary="Moderate one image",
)
async def moderate(
    request: Request,
    response: Response,
    who: Moderator,
    svc: Annotated[Services, Depends(services)],
    policy: Annotated[str | None, Query(max_length=64, description="Policy name.")] = None,
    review: Annotated[
        bool,
        Query(
            description="Queue the image for review when the decision is `review`: its "
            "bytes are kept (in the job media store, while the item is undecided) and the "
            f"answer's `{REVIEW_HEADER}` header names the item. The same bytes under the "
            "same policy and version are queued once per tenant."
        ),
    ] = False,
) -> ModerationResult:
    check_query(request, {"policy", "review"})
    svc.admission.check()  # a full server refuses before reading the body
    async with svc.admission.memory.hold(declared_length(request)) as held:
        received = await receive_single(request, svc.settings, policy, held=held)
        async with svc.admission.slot():
            item = await resolve(received, svc.settings)
            result = await moderate_input(svc, who, item)
        if review:
            queued = await keep_for_review(svc, who, item.data, result)
            if queued is not None:
                response.headers[REVIEW_HEADER] = queued.id
    return result


def _batch_too_large(message: str, details: dict[str, Any]) -> InputError:
    return InputError(message, code="batch_too_large", status=413, details=details)


async def _read_batch(request: Request, svc: Services, held: Held) -> BatchRequest:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype and not is_json(ctype):
        raise UnsupportedMediaType(
            f"content-type {ctype!r} is not accepted: send the batch as application/json"
        )
    settings = svc.settings
    try:
        body = await read_body(request, batch_max_bytes(settings), held, what="the batch")
    except MediaTooLarge as exc:
        raise _batch_too_large(exc.message, exc.details) from None
    most = settings.max_batch_items
    # {"items": [...], "policy"}, each item at most four keys
    payload = await parse_json_async(body, max_depth=BATCH_MAX_DEPTH, max_items=5 * most + 16)
    items = payload.get("items") if isinstance(payload, dict) else None
    if isinstance(items, list) and len(items) > most:
        raise _batch_too_large(f"at most {most} items per batch", {"max_items": most})
    return validated(
        BatchRequest,
        payload,
        'the batch must be {"items": [{"url": ...} or {"base64": ...}, ...]}',
    )


@router.post(
    "/moderate/batch",
    response_model=BatchResponse,
    openapi_extra=_BATCH_BODY,
    summary="Moderate many images",
)
async def moderate_batch(
    request: Request, who: Moderator, svc: Annotated[Services, Depends(services)]
) -> BatchResponse:
    """The whole batch is read (bounded) and validated before any item is analysed."""
    declared, limit = declared_length(request), batch_max_bytes(svc.settings)
    if declared is not None and declared > limit:
        raise _batch_too_large(
            f"the batch of {declared} bytes is over the limit of {limit} bytes",
            {"content_length": declared, "max_bytes": limit},
        )
    svc.admission.check()  # a full server refuses before reading the body
    async with svc.admission.memory.hold(declared) as held:
        body = await _read_batch(request, svc, held)
        async with svc.admission.slot():
            return await _run_batch(body, who, svc)


async def _run_batch(body: BatchRequest, who: Principal, svc: Services) -> BatchResponse:
    async def one(i: int, ref: MediaRef) -> BatchItem:
        try:
            if ref.policy is None and body.policy is not None:
                ref = ref.model_copy(update={"policy": body.policy})
            item = await from_ref(ref, svc.settings)
            result = await moderate_input(svc, who, item)
            queued = await keep_for_review(svc, who, item.data, result) if body.review else None
            return BatchItem(
                index=i, id=ref.id, result=result, review_id=queued.id if queued else None
            )
        except BastionError as exc:
            error = {"status": exc.status, **exc.to_dict()}
            return BatchItem(index=i, id=ref.id, error=cast(dict[str, Any], bounded(error)))

    results = await asyncio.gather(*(one(i, r) for i, r in enumerate(body.items)))
    return BatchResponse(results=list(results))
