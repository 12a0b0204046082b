"""Tenants, API keys, policies and word/domain lists.

Bodies are bounded before they are parsed, and parsed and validated off the event
loop: JSON bodies through :func:`bastion.api.params.json_model` (64 KiB; lists 4 MiB),
policies (YAML) up to :data:`bastion.policy.loader.MAX_POLICY_BYTES` (413
``policy_too_large`` beyond). Names are checked like policy names everywhere: a
tenant's default policy must be a policy name, tenant and key names must be visible
text of bounded length.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bastion.api.auth import Admin, Reader
from bastion.api.inputs import read_body
from bastion.api.params import json_body_doc, json_model
from bastion.api.services import Services, services
from bastion.errors import Forbidden, NotFound
from bastion.policy.loader import MAX_POLICY_BYTES, dump_policy, parse_policy, read_policy_text
from bastion.policy.model import POLICY_NAME, Lists, Policy
from bastion.store.repo import DEFAULT_TENANT, Principal
from bastion.store.tables import ApiKey, Tenant
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["administration"])
Svc = Annotated[Services, Depends(services)]
_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}
MAX_LISTS_BYTES = 4 * 1024 * 1024
TENANT_ID = r"^[a-z0-9][a-z0-9_\-]{0,63}$"


def _visible(value: str) -> str:
    """Text people read: no control characters, and not empty or only whitespace."""
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value):
        raise ValueError("must not contain control or unassigned characters")
    if value and not value.strip():
        raise ValueError("must not be only whitespace")
    return value


DisplayName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_visible)]
KeyName = Annotated[str, Field(max_length=200), AfterValidator(_visible)]
PolicyName = Annotated[str, Field(pattern=POLICY_NAME, description="A policy name.")]
TenantId = Annotated[str, Field(pattern=TENANT_ID, description="Tenant id: a-z, 0-9, '-', '_'.")]
Scope = Literal["moderate", "read", "admin"]


def _default_scopes() -> list[Scope]:
    return ["moderate", "read"]


def _root(who: Principal) -> None:
    if who.tenant_id != DEFAULT_TENANT:
        raise Forbidden(
            "only an admin key of the default tenant manages tenants", code="insufficient_scope"
        )


class KeyOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    scopes: list[str]
    created_at: UtcTime
    revoked_at: UtcTime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            scopes=list(row.scopes),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class NewKey(KeyOut):
    key: str = Field(description="The key itself. Shown only now; Bastion keeps only a hash.")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: KeyName = Field("", description="What the key is for (at most 200 characters).")
    scopes: list[Scope] = Field(default_factory=_default_scopes, min_length=1, max_length=3)
    tenant_id: TenantId | None = Field(
        None, description="Another tenant (default-tenant admins only)."
    )


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: TenantId
    name: DisplayName = Field(description="The tenant's name (1 to 200 visible characters).")


class TenantOut(BaseModel):
    id: str
    name: str
    default_policy: str
    created_at: UtcTime
    training_consent: bool = Field(
        description="Media of decided items may be kept as training samples: each "
        "decision or correction taken while it is on keeps its item's media through "
        "retention (see `GET /v1/corrections`, `media_kept`)."
    )

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(
            id=t.id,
            name=t.name,
            default_policy=t.default_policy,
            created_at=t.created_at,
            training_consent=t.training_consent,
        )


class TenantCreated(TenantOut):
    admin_key: NewKey


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_policy: PolicyName | None = Field(
        None, description="The policy used when a request names none (an existing policy)."
    )
    training_consent: bool | None = Field(
        None,
        description="Whether media of decided items may be kept as training samples "
        "(from the next decision on; media kept before stays kept).",
    )


class PolicyOut(BaseModel):
    name: str
    version: str
    source: str = Field(description="'builtin' or 'tenant'.")
    yaml: str | None = None


@router.get("/tenants", response_model=list[TenantOut])
async def list_tenants(who: Admin, svc: Svc) -> list[TenantOut]:
    _root(who)
    rows = await run_in_threadpool(svc.repo.list_tenants)
    return [TenantOut.of(t) for t in rows]


@router.post(
    "/tenants", response_model=TenantCreated, status_code=201, openapi_extra=json_body_doc(TenantIn)
)
async def create_tenant(request: Request, who: Admin, svc: Svc) -> TenantCreated:
    _root(who)
    body = await json_model(request, TenantIn)
    t = await run_in_threadpool(svc.repo.create_tenant, body.id, body.name)
    full, row = await run_in_threadpool(svc.repo.create_key, t.id, "admin", ["admin"])
    return TenantCreated(
        **TenantOut.of(t).model_dump(),
        admin_key=NewKey(key=full, **KeyOut.of(row).model_dump()),
    )


@router.get("/tenant", response_model=TenantOut, summary="The calling key's tenant")
async def my_tenant(who: Reader, svc: Svc) -> TenantOut:
    t = await run_in_threadpool(svc.repo.get_tenant, who.tenant_id)
    return TenantOut.of(t)


@router.patch("/tenant", response_model=TenantOut, openapi_extra=json_body_doc(TenantPatch))
async def patch_tenant(request: Request, who: Admin, svc: Svc) -> TenantOut:
    body = await json_model(request, TenantPatch)
    if body.default_policy is not None:
        await run_in_threadpool(svc.policies.resolve, who.tenant_id, body.default_policy)
    t = await run_in_threadpool(
        lambda: svc.repo.update_tenant(
            who.tenant_id,
            default_policy=body.default_policy,
            training_consent=body.training_consent,
        )
    )
    return TenantOut.of(t)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(who: Admin, svc: Svc) -> list[KeyOut]:
    rows = await run_in_threadpool(svc.repo.list_keys, who.tenant_id)
    return [KeyOut.of(r) for r in rows]


@router.post("/keys", response_model=NewKey, status_code=201, openapi_extra=json_body_doc(KeyIn))
async def create_key(request: Request, who: Admin, svc: Svc) -> NewKey:
    body = await json_model(request, KeyIn)
    tenant = body.tenant_id or who.tenant_id
    if tenant != who.tenant_id:
        _root(who)
    full, row = await run_in_threadpool(svc.repo.create_key, tenant, body.name, list(body.scopes))
    return NewKey(key=full, **KeyOut.of(row).model_dump())


@router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke a key")
async def revoke_key(key_id: str, who: Admin, svc: Svc) -> KeyOut:
    scope = None if who.tenant_id == DEFAULT_TENANT else who.tenant_id
    row = await run_in_threadpool(svc.repo.revoke_key, key_id, scope)
    svc.forget_auth()
    return KeyOut.of(row)


async def _policy_body(request: Request, name: str | None = None) -> tuple[Policy, str]:
    """The YAML policy in the body (named ``name`` when given), parsed and validated in
    a worker thread."""
    data = await read_body(request, MAX_POLICY_BYTES, what="the policy", code="policy_too_large")
    return await run_in_threadpool(lambda: read_policy_text(data, name=name))


@router.get("/policies", response_model=list[PolicyOut])
async def list_policies(who: Reader, svc: Svc) -> list[PolicyOut]:
    rows = await run_in_threadpool(svc.repo.list_policies, who.tenant_id)
    own = {r.name: r for r in rows}
    out = [PolicyOut(name=r.name, version=r.version, source="tenant") for r in rows]
    out += [
        PolicyOut(name=n, version=p.version, source="builtin")
        for n, p in svc.policies.builtin.items()
        if n not in own
    ]
    return sorted(out, key=lambda p: p.name)


@router.get("/policies/{name}", response_model=PolicyOut)
async def get_policy(name: str, who: Reader, svc: Svc) -> PolicyOut:
    text = await run_in_threadpool(svc.repo.get_policy_text, who.tenant_id, name)
    if text is not None:
        version = (await run_in_threadpool(parse_policy, text)).version
        return PolicyOut(name=name, version=version, source="tenant", yaml=text)
    if name in svc.policies.builtin:
        p = svc.policies.builtin[name]
        return PolicyOut(name=name, version=p.version, source="builtin", yaml=dump_policy(p))
    raise NotFound(f"policy {name!r} not found", code="policy_not_found")


@router.post(
    "/policies/validate",
    response_model=PolicyOut,
    openapi_extra=_YAML_BODY,
    summary="Validate a YAML policy without saving it (errors carry line numbers)",
)
async def validate_policy(request: Request, who: Reader) -> PolicyOut:
    p, text = await _policy_body(request)
    return PolicyOut(name=p.name, version=p.version, source="tenant", yaml=text)


@router.put(
    "/policies/{name}",
    response_model=PolicyOut,
    openapi_extra=_YAML_BODY,
    summary="Create or replace a tenant policy from YAML",
)
async def put_policy(name: str, request: Request, who: Admin, svc: Svc) -> PolicyOut:
    p, text = await _policy_body(request, name)
    await run_in_threadpool(svc.repo.put_policy, who.tenant_id, text)
    return PolicyOut(name=p.name, version=p.version, source="tenant", yaml=text)


@router.delete("/policies/{name}", status_code=204)
async def delete_policy(name: str, who: Admin, svc: Svc) -> None:
    await run_in_threadpool(svc.repo.delete_policy, who.tenant_id, name)


@router.get("/lists", response_model=Lists, summary="The tenant's word and domain lists")
async def get_lists(who: Reader, svc: Svc) -> Lists:
    t = await run_in_threadpool(svc.repo.get_tenant, who.tenant_id)
    return Lists.model_validate(t.lists or {})


@router.put(
    "/lists",
    response_model=Lists,
    openapi_extra=json_body_doc(Lists),
    summary="Replace the tenant's word and domain lists",
)
async def put_lists(request: Request, who: Admin, svc: Svc) -> Lists:
    body = await json_model(request, Lists, MAX_LISTS_BYTES)
    await run_in_threadpool(svc.repo.update_tenant, who.tenant_id, lists=body)
    return body
