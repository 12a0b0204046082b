"""POST /v1/moderate and /v1/moderate/batch: synchronous image moderation."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.auth import Moderator
from bastion.api.inputs import MediaInput, MediaRef, from_ref, read_single
from bastion.api.services import Services, services
from bastion.errors import BastionError, InputError
from bastion.results import ModerationResult
from bastion.store.repo import Principal

router = APIRouter(prefix="/v1", tags=["moderation"])

_IMAGE_BODY = {
    "requestBody": {
        "description": "The image as a multipart `file`, the raw body (image/*), "
        'or JSON `{"url": ...}` / `{"base64": ...}`.',
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "policy": {"type": "string"},
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": MediaRef.model_json_schema()},
        },
    }
}


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[MediaRef] = Field(min_length=1, description="Images by URL or base64.")
    policy: str | None = Field(None, max_length=64, description="Default policy for all items.")


class BatchItem(BaseModel):
    index: int
    id: str | None = None
    result: ModerationResult | None = None
    error: dict[str, Any] | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


async def moderate_input(svc: Services, who: Principal, item: MediaInput) -> ModerationResult:
    policy, lists = await run_in_threadpool(svc.policies.resolve, who.tenant_id, item.policy)
    async with svc.inflight:
        return await svc.dedup.moderate_bytes(
            item.data,
            policy,
            tenant=who.tenant_id,
            extra_lists=lists,
            content_type=item.content_type,
        )


@router.post(
    "/moderate",
    response_model=ModerationResult,
    openapi_extra=_IMAGE_BODY,
    summary="Moderate one image",
)
async def moderate(
    request: Request,
    who: Moderator,
    svc: Annotated[Services, Depends(services)],
    policy: Annotated[str | None, Query(max_length=64, description="Policy name.")] = None,
) -> ModerationResult:
    async with svc.admission.slot():
        item = await read_single(request, svc.settings, policy)
        return await moderate_input(svc, who, item)


@router.post("/moderate/batch", response_model=BatchResponse, summary="Moderate many images")
async def moderate_batch(
    body: BatchRequest, who: Moderator, svc: Annotated[Services, Depends(services)]
) -> BatchResponse:
    if len(body.items) > svc.settings.max_batch_items:
        raise InputError(
            f"at most {svc.settings.max_batch_items} items per batch",
            code="batch_too_large",
            status=413,
        )

    async def one(i: int, ref: MediaRef) -> BatchItem:
        try:
            if ref.policy is None and body.policy is not None:
                ref = ref.model_copy(update={"policy": body.policy})
            item = await from_ref(ref, svc.settings)
            return BatchItem(index=i, id=ref.id, result=await moderate_input(svc, who, item))
        except BastionError as exc:
            return BatchItem(index=i, id=ref.id, error={"status": exc.status, **exc.to_dict()})

    async with svc.admission.slot():
        results = await asyncio.gather(*(one(i, r) for i, r in enumerate(body.items)))
    return BatchResponse(results=list(results))
