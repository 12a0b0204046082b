"""Tenants, API keys, policies and word/domain lists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.auth import Admin, Reader
from bastion.api.services import Services, services
from bastion.errors import Forbidden, InputError, NotFound
from bastion.policy.loader import dump_policy, parse_policy
from bastion.policy.model import Lists
from bastion.store.models import ApiKey
from bastion.store.repo import DEFAULT_TENANT, Principal
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["administration"])
Svc = Annotated[Services, Depends(services)]
_YAML_BODY = {
    "requestBody": {
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        }
    }
}


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

    name: str = Field("", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["moderate", "read"])
    tenant_id: str | None = Field(None, description="Another tenant (default-tenant admins only).")


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=64, description="Tenant id: a-z, 0-9, '-', '_'.")
    name: str = Field(max_length=200)


class TenantOut(BaseModel):
    id: str
    name: str
    default_policy: str
    created_at: UtcTime


class TenantCreated(TenantOut):
    admin_key: NewKey


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_policy: str | None = Field(None, max_length=64)


class PolicyOut(BaseModel):
    name: str
    version: str
    source: str = Field(description="'builtin' or 'tenant'.")
    yaml: str | None = None


@router.get("/tenants", response_model=list[TenantOut])
async def list_tenants(who: Admin, svc: Svc) -> list[TenantOut]:
    _root(who)
    rows = await run_in_threadpool(svc.repo.list_tenants)
    return [
        TenantOut(id=t.id, name=t.name, default_policy=t.default_policy, created_at=t.created_at)
        for t in rows
    ]


@router.post("/tenants", response_model=TenantCreated, status_code=201)
async def create_tenant(body: TenantIn, who: Admin, svc: Svc) -> TenantCreated:
    _root(who)
    t = await run_in_threadpool(svc.repo.create_tenant, body.id, body.name)
    full, row = await run_in_threadpool(svc.repo.create_key, t.id, "admin", ["admin"])
    return TenantCreated(
        id=t.id,
        name=t.name,
        default_policy=t.default_policy,
        created_at=t.created_at,
        admin_key=NewKey(key=full, **KeyOut.of(row).model_dump()),
    )


@router.get("/tenant", response_model=TenantOut, summary="The calling key's tenant")
async def my_tenant(who: Reader, svc: Svc) -> TenantOut:
    t = await run_in_threadpool(svc.repo.get_tenant, who.tenant_id)
    return TenantOut(id=t.id, name=t.name, default_policy=t.default_policy, created_at=t.created_at)


@router.patch("/tenant", response_model=TenantOut)
async def patch_tenant(body: TenantPatch, who: Admin, svc: Svc) -> TenantOut:
    if body.default_policy is not None:
        await run_in_threadpool(svc.policies.resolve, who.tenant_id, body.default_policy)
    t = await run_in_threadpool(
        svc.repo.update_tenant, who.tenant_id, default_policy=body.default_policy
    )
    return TenantOut(id=t.id, name=t.name, default_policy=t.default_policy, created_at=t.created_at)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(who: Admin, svc: Svc) -> list[KeyOut]:
    rows = await run_in_threadpool(svc.repo.list_keys, who.tenant_id)
    return [KeyOut.of(r) for r in rows]


@router.post("/keys", response_model=NewKey, status_code=201)
async def create_key(body: KeyIn, who: Admin, svc: Svc) -> NewKey:
    tenant = body.tenant_id or who.tenant_id
    if tenant != who.tenant_id:
        _root(who)
    full, row = await run_in_threadpool(svc.repo.create_key, tenant, body.name, body.scopes)
    return NewKey(key=full, **KeyOut.of(row).model_dump())


@router.delete("/keys/{key_id}", response_model=KeyOut, summary="Revoke a key")
async def revoke_key(key_id: str, who: Admin, svc: Svc) -> KeyOut:
    scope = None if who.tenant_id == DEFAULT_TENANT else who.tenant_id
    row = await run_in_threadpool(svc.repo.revoke_key, key_id, scope)
    svc.forget_auth()
    return KeyOut.of(row)


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
        return PolicyOut(name=name, version=parse_policy(text).version, source="tenant", yaml=text)
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
async def validate_policy(
    who: Reader, text: Annotated[str, Body(media_type="application/yaml")]
) -> PolicyOut:
    p = parse_policy(text)
    return PolicyOut(name=p.name, version=p.version, source="tenant", yaml=text)


@router.put(
    "/policies/{name}",
    response_model=PolicyOut,
    openapi_extra=_YAML_BODY,
    summary="Create or replace a tenant policy from YAML",
)
async def put_policy(
    name: str, who: Admin, svc: Svc, text: Annotated[str, Body(media_type="application/yaml")]
) -> PolicyOut:
    p = parse_policy(text)
    if p.name != name:
        raise InputError(
            f"policy name in the body ({p.name!r}) differs from the URL ({name!r})",
            code="policy_name_mismatch",
        )
    await run_in_threadpool(svc.repo.put_policy, who.tenant_id, text)
    return PolicyOut(name=p.name, version=p.version, source="tenant", yaml=text)


@router.delete("/policies/{name}", status_code=204)
async def delete_policy(name: str, who: Admin, svc: Svc) -> None:
    await run_in_threadpool(svc.repo.delete_policy, who.tenant_id, name)


@router.get("/lists", response_model=Lists, summary="The tenant's word and domain lists")
async def get_lists(who: Reader, svc: Svc) -> Lists:
    t = await run_in_threadpool(svc.repo.get_tenant, who.tenant_id)
    return Lists.model_validate(t.lists or {})


@router.put("/lists", response_model=Lists, summary="Replace the tenant's word and domain lists")
async def put_lists(body: Lists, who: Admin, svc: Svc) -> Lists:
    await run_in_threadpool(svc.repo.update_tenant, who.tenant_id, lists=body)
    return body
