"""Access keys of the Rekognition-compatible endpoint, managed by a tenant's admins.

``POST /v1/aws-keys`` issues an access key id and its secret access key (shown only in
that answer; see :mod:`bastion.aws.credentials` for how secrets are derived, never
stored), ``GET /v1/aws-keys`` lists the tenant's keys without secrets, and
``DELETE /v1/aws-keys/{id}`` revokes one (at once in this process, within seconds in
the others). Every call is scoped to the calling key's tenant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.admin import KeyName, Scope
from bastion.api.auth import Admin
from bastion.api.params import json_body_doc, json_model
from bastion.api.services import Services, services
from bastion.aws.credentials import AwsKeyInfo, AwsKeys
from bastion.errors import BastionError
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["administration"])
Svc = Annotated[Services, Depends(services)]
KeyIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="The access key id (`BKIA` and 16 of A-Z, 2-7).",
    ),
]


def _moderate() -> list[Scope]:
    return ["moderate"]


class AwsKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName = Field("", description="What the key is for (at most 200 characters).")
    scopes: list[Scope] = Field(
        default_factory=_moderate,
        min_length=1,
        max_length=3,
        description="What the key may do, as for API keys; Rekognition operations need `moderate`.",
    )


class AwsKeyOut(BaseModel):
    access_key_id: str = Field(description="The access key id clients sign with.")
    tenant_id: str
    name: str
    scopes: list[str]
    created_at: UtcTime
    last_used_at: UtcTime | None = Field(
        description="When a request signed with it was last verified (to the minute)."
    )
    revoked_at: UtcTime | None

    @classmethod
    def of(cls, key: AwsKeyInfo) -> AwsKeyOut:
        return cls(
            access_key_id=key.id,
            tenant_id=key.tenant_id,
            name=key.name,
            scopes=list(key.scopes),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class NewAwsKey(AwsKeyOut):
    secret_access_key: str = Field(
        description="The secret access key. Shown only now: Bastion cannot show it again."
    )


def _keys(svc: Services) -> AwsKeys:
    if svc.aws_keys is None:
        raise BastionError("access keys are not available in this process", status=503)
    return svc.aws_keys


@router.post(
    "/aws-keys",
    response_model=NewAwsKey,
    status_code=201,
    summary="Issue an access key for the Rekognition-compatible endpoint",
    openapi_extra=json_body_doc(AwsKeyIn),
)
async def create_aws_key(request: Request, who: Admin, svc: Svc) -> NewAwsKey:
    body = await json_model(request, AwsKeyIn)
    info, secret = await run_in_threadpool(
        _keys(svc).create, who.tenant_id, body.name, list(body.scopes)
    )
    return NewAwsKey(secret_access_key=secret, **AwsKeyOut.of(info).model_dump())


@router.get("/aws-keys", response_model=list[AwsKeyOut], summary="The tenant's access keys")
async def list_aws_keys(who: Admin, svc: Svc) -> list[AwsKeyOut]:
    keys = await run_in_threadpool(_keys(svc).list, who.tenant_id)
    return [AwsKeyOut.of(k) for k in keys]


@router.delete("/aws-keys/{key_id}", response_model=AwsKeyOut, summary="Revoke an access key")
async def revoke_aws_key(key_id: KeyIdPath, who: Admin, svc: Svc) -> AwsKeyOut:
    info = await run_in_threadpool(_keys(svc).revoke, who.tenant_id, key_id)
    return AwsKeyOut.of(info)
