"""Live-stream rule sets: list, create, read, replace, delete, export and import.

Bodies are YAML or JSON. Rules are validated in full before anything is saved; a
problem answers 422 ``invalid_rules`` with every error's path, line and column; a
name or channel another rule set has answers 409 ``rule_set_conflict``. Every save
makes the :class:`~bastion.rules.RuleBook` reload the tenant's rules at once.

Bodies are bounded (413 ``rules_too_large`` over 1 MiB or 50,000 values) and parsed,
validated and compiled in a worker thread, so a large or hostile document never holds
the event loop.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from bastion.api import rules_evaluate
from bastion.api.auth import Admin, Reader
from bastion.api.params import RuleSetIdPath
from bastion.api.rule_checks import (
    RULES_BODY,
    remove_rule_set,
    rule_set_feasibility,
    rules_text,
    save_rule_set,
)
from bastion.api.services import Services, services
from bastion.rules.errors import Issue
from bastion.rules.loader import dump_rules_yaml, parse_document
from bastion.rules.repo import ImportMode, StoredRuleSet
from bastion.rules.spec import RuleSetSpec
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["rules"])
Svc = Annotated[Services, Depends(services)]


class RuleSetOut(BaseModel):
    id: int = Field(description="Rule set id.")
    name: str = Field(description="Rule set name.")
    scope: Literal["channel", "global"] = Field(description="One channel, or a name pattern.")
    channel: str | None = Field(description="The channel, for a channel rule set.")
    channel_pattern: str | None = Field(description="The pattern, for a global rule set.")
    priority: int = Field(description="Order among global rule sets; lowest wins.")
    enabled: bool = Field(description="Whether the rule set applies at all.")
    version: str = Field(description="Hash of the rule set's content.")
    created_at: UtcTime = Field(description="When it was created.")
    updated_at: UtcTime = Field(description="When it last changed.")
    spec: RuleSetSpec = Field(description="The rule set, defaults filled in.")

    @classmethod
    def of(cls, stored: StoredRuleSet) -> RuleSetOut:
        spec = stored.spec
        return cls(
            id=stored.id,
            name=spec.name,
            scope=spec.scope,
            channel=spec.channel,
            channel_pattern=spec.channel_pattern,
            priority=spec.priority,
            enabled=spec.enabled,
            version=stored.version,
            created_at=stored.created_at,
            updated_at=stored.updated_at,
            spec=spec,
        )


class ImportOut(BaseModel):
    mode: ImportMode = Field(description="'replace' or 'merge'.")
    created: list[str] = Field(description="Names of rule sets created.")
    updated: list[str] = Field(description="Names of rule sets changed.")
    unchanged: list[str] = Field(description="Names of rule sets imported as they were.")
    deleted: list[str] = Field(description="Names of rule sets deleted (replace only).")
    rule_sets: list[RuleSetOut] = Field(description="The imported rule sets as stored.")


@router.get("/rules", response_model=list[RuleSetOut], summary="The tenant's rule sets")
async def list_rule_sets(who: Reader, svc: Svc) -> list[RuleSetOut]:
    rows = await run_in_threadpool(svc.rules.store.rule_sets, who.tenant_id)
    return [RuleSetOut.of(r) for r in rows]


@router.get(
    "/rules/export",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}},
    summary="Every rule set of the tenant as one YAML document",
)
async def export_rule_sets(who: Reader, svc: Svc) -> Response:

    def export() -> str:
        rows = svc.rules.store.rule_sets(who.tenant_id)
        return dump_rules_yaml([r.spec for r in rows])

    return Response(await run_in_threadpool(export), media_type="application/yaml")


@router.post(
    "/rules/import",
    response_model=ImportOut,
    openapi_extra=RULES_BODY,
    summary="Import a YAML document of rule sets (validated in full, one transaction)",
)
async def import_rule_sets(
    request: Request,
    who: Admin,
    svc: Svc,
    mode: Annotated[
        ImportMode,
        Query(
            description="'replace': the tenant ends with exactly these rule sets; "
            "'merge': these are created or updated by name, others kept."
        ),
    ] = "merge",
) -> ImportOut:
    text, fmt = await rules_text(request)

    def save() -> ImportOut:
        parsed = parse_document(text, fmt=fmt)
        issues: list[Issue] = []
        for i, spec in enumerate(parsed.value.rule_sets):
            issues += rule_set_feasibility(svc, who.tenant_id, spec, ("rule_sets", i))
        if issues:
            raise parsed.error(issues)
        with parsed.locating():
            summary = svc.rules.store.import_rule_sets(
                who.tenant_id, parsed.value.rule_sets, mode=mode
            )
        return ImportOut(
            mode=summary.mode,
            created=summary.created,
            updated=summary.updated,
            unchanged=summary.unchanged,
            deleted=summary.deleted,
            rule_sets=[RuleSetOut.of(r) for r in summary.rule_sets],
        )

    try:
        return await run_in_threadpool(save)
    finally:
        svc.rules.invalidate(who.tenant_id)


@router.post(
    "/rules",
    response_model=RuleSetOut,
    status_code=201,
    openapi_extra=RULES_BODY,
    summary="Create a rule set",
)
async def create_rule_set(request: Request, who: Admin, svc: Svc) -> RuleSetOut:
    text, fmt = await rules_text(request)
    stored = await run_in_threadpool(save_rule_set, svc, who.tenant_id, text, fmt)
    return RuleSetOut.of(stored)


@router.get("/rules/{rule_set_id}", response_model=RuleSetOut, summary="One rule set")
async def get_rule_set(rule_set_id: RuleSetIdPath, who: Reader, svc: Svc) -> RuleSetOut:
    stored = await run_in_threadpool(svc.rules.store.get, who.tenant_id, rule_set_id)
    return RuleSetOut.of(stored)


@router.put(
    "/rules/{rule_set_id}",
    response_model=RuleSetOut,
    openapi_extra=RULES_BODY,
    summary="Replace a rule set",
)
async def put_rule_set(
    rule_set_id: RuleSetIdPath, request: Request, who: Admin, svc: Svc
) -> RuleSetOut:
    text, fmt = await rules_text(request)
    stored = await run_in_threadpool(save_rule_set, svc, who.tenant_id, text, fmt, rule_set_id)
    return RuleSetOut.of(stored)


@router.delete("/rules/{rule_set_id}", status_code=204, summary="Delete a rule set")
async def delete_rule_set(rule_set_id: RuleSetIdPath, who: Admin, svc: Svc) -> None:
    await run_in_threadpool(remove_rule_set, svc, who.tenant_id, rule_set_id)


router.include_router(rules_evaluate.router)
