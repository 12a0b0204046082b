"""A tenant's models over REST: the built-in models, the tenant's heads and their
versions, promotion, rollback, challengers, the audit log and the promotion settings.

``GET /v1/models`` (scope ``read``) lists the models Bastion ships and runs in this
process, and the tenant's heads, one per category, with every version (aliases, run
metrics, creation time) and how often the challenger disagreed with the champion (every
process's counts, added up in the database). ``POST /v1/models/{category}/promote``
(scope ``admin``) makes a version (by default the challenger) the champion when it
beats the champion on its own frozen held-out samples (409 ``promotion_refused`` with
the figures otherwise; ``force`` with a ``reason`` overrides the checks);
``.../rollback`` moves the champion back;
``PUT``/``DELETE .../challenger`` set and clear the challenger. Every action, refused
promotions included, is in ``GET /v1/models/events``. ``GET``/``PUT
/v1/models/settings`` hold the tenant's high-severity categories, in which a promotion
may not lower recall. Every moderating process follows an alias moved here within
``registry.refresh_s``.

``{category}`` is the category's slug, as the registered model is named
(``knives-and-blades`` for ``Knives and Blades``, ``drugs-tobacco`` for ``Drugs &
Tobacco``): taxonomy labels hold spaces, ``&`` and could hold ``/``, which a path
segment cannot carry safely; the label itself, percent-encoded, is accepted too. The
work (MLflow, the samples, onnxruntime) runs in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.auth import Admin, Reader
from bastion.api.openapi import ErrorResponse
from bastion.api.params import json_body_doc, json_model
from bastion.api.services import Services, services
from bastion.errors import EmptyInput
from bastion.registry.checks import PromotionChecks
from bastion.registry.config import category_slug
from bastion.registry.heads import CHALLENGER, CHAMPION
from bastion.registry.promotion import (
    MAX_REASON,
    CategoryHeads,
    Outcome,
    SeveritySettings,
    resolve_category,
)
from bastion.registry.store import HeadVersion
from bastion.registry.tables import ModelEvent
from bastion.store.repo import Principal
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["models"])
Svc = Annotated[Services, Depends(services)]
CategoryPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        description="The category's slug, as its registered model is named "
        "(`knives-and-blades`, `drugs-tobacco`), or its taxonomy label percent-encoded.",
        examples=["firearms", "drugs-tobacco"],
    ),
]
MAX_VERSION = 2**31 - 1
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "The aliases do not allow it: `promotion_refused` (the checks refused "
        "the candidate; `details` has the figures and the reasons), `no_challenger`, "
        "`already_champion`, `nothing_to_roll_back`.",
    }
}
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


# ---- bodies ---------------------------------------------------------------------------
class PromoteIn(BaseModel):
    """Which version to promote, and whether to override the checks."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="The version to promote; null: the challenger."
    )
    force: bool = Field(
        False, description="Promote even if the checks refuse it (needs a `reason`)."
    )
    reason: str | None = Field(
        None, max_length=MAX_REASON, description="Why (required with `force`), for the audit log."
    )


class RollbackIn(BaseModel):
    """Where to roll back to, and why."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        None,
        ge=1,
        le=MAX_VERSION,
        description="The version to make champion again; null: the version the current "
        "champion was promoted over (from the audit log).",
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="Why, for the audit log.")


class ChallengerIn(BaseModel):
    """The version to score in shadow beside the champion."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION, description="The version to make challenger.")
    reason: str | None = Field(None, max_length=MAX_REASON, description="Why, for the audit log.")


class SettingsIn(BaseModel):
    """The tenant's promotion settings."""

    model_config = ConfigDict(extra="forbid")

    high_severity: list[Annotated[str, Field(max_length=100)]] = Field(
        max_length=200,
        description="Taxonomy labels (an L1 label covers its L2 labels) in which a "
        "promotion may not lower recall; replaces the earlier list.",
    )


# ---- answers --------------------------------------------------------------------------
class BuiltInOut(BaseModel):
    analyzer: str = Field(description="The analyzer's name in the settings.")
    type: str = Field(description="The analyzer's type.")
    model: str = Field(description="The model it runs.")
    version: str = Field(description="The model's version (its weights' digest).")
    categories: list[str] = Field(description="The taxonomy labels it can emit.")


class VersionOut(BaseModel):
    version: int = Field(description="The version number.")
    aliases: list[str] = Field(description="`champion`, `challenger`, or none.")
    created_at: UtcTime = Field(description="When the version was registered.")
    threshold: float | None = Field(description="Probability at or above which it flags.")
    embedding_model: str | None = Field(description="The embedding model it reads.")
    sha256: str = Field(description="The sha256 of its ONNX file.")
    run_id: str | None = Field(description="The MLflow run it was logged with.")
    metrics: dict[str, float] = Field(
        description="Its run's metrics (`held_out_f1`, `baseline_f1`, ...)."
    )

    @classmethod
    def of(cls, v: HeadVersion) -> VersionOut:
        return cls(
            version=v.version,
            aliases=list(v.aliases),
            created_at=v.created_at,
            threshold=v.threshold,
            embedding_model=v.embedding_model,
            sha256=v.sha256,
            run_id=v.run_id,
            metrics=dict(v.metrics),
        )


class ShadowOut(BaseModel):
    champion: str = Field(description="The champion's version (`v<n>`; `none` without one).")
    challenger: str = Field(description="The challenger's version (`v<n>`).")
    scored: int = Field(description="Items both heads were scored on, by every process.")
    challenger_only: int = Field(description="Items the challenger flags and the champion not.")
    champion_only: int = Field(description="Items the champion flags and the challenger not.")


class HeadOut(BaseModel):
    category: str = Field(description="The taxonomy label the head decides.")
    slug: str = Field(description="The category as paths name it.")
    model: str = Field(description="The registered model (`<prefix>.<tenant>.<slug>`).")
    champion: int | None = Field(description="The version requests are scored with.")
    challenger: int | None = Field(description="The version scored in shadow.")
    versions: list[VersionOut] = Field(description="Every version, newest first.")
    shadow: list[ShadowOut] = Field(
        description="The challenger's disagreements with the champion, added up over every "
        "process and restart (the current challenger only; other processes' within a few "
        "seconds)."
    )


class ModelsOut(BaseModel):
    built_in: list[BuiltInOut] = Field(description="The models Bastion ships and runs here.")
    heads: list[HeadOut] = Field(description="The tenant's heads, by category.")


class EventOut(BaseModel):
    id: str = Field(description="The event's id (`mev_…`).")
    category: str = Field(description="The taxonomy label of the head.")
    slug: str = Field(description="The category as paths name it.")
    model: str = Field(description="The registered model.")
    action: str = Field(
        description="`promote`, `rollback`, `set_challenger` or `clear_challenger`."
    )
    outcome: str = Field(description="`applied`, or `refused` (a promotion the checks refused).")
    from_version: int | None = Field(description="The version the alias named before.")
    to_version: int | None = Field(description="The version it names after (or would have).")
    forced: bool = Field(description="A promotion asked to override the checks.")
    reason: str | None = Field(description="Why, as given.")
    checks: dict[str, Any] | None = Field(description="The promotion checks' figures.")
    by: str = Field(description="`key:<id>`, `user:<id>` or `cli:<name>`.")
    at: UtcTime = Field(description="When.")

    @classmethod
    def of(cls, e: ModelEvent) -> EventOut:
        return cls(
            id=e.id,
            category=e.category,
            slug=category_slug(e.category),
            model=e.model_name,
            action=e.action,
            outcome=e.outcome,
            from_version=e.from_version,
            to_version=e.to_version,
            forced=e.forced,
            reason=e.reason,
            checks=e.checks,
            by=e.actor,
            at=e.created_at,
        )


class ActionOut(BaseModel):
    event: EventOut = Field(description="The action as the audit log keeps it.")
    checks: PromotionChecks | None = Field(description="The promotion checks (promotions).")

    @classmethod
    def of(cls, done: Outcome) -> ActionOut:
        return cls(event=EventOut.of(done.event), checks=done.checks)


class EventList(BaseModel):
    events: list[EventOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class SettingsOut(BaseModel):
    high_severity: list[str] = Field(
        description="Categories in which a promotion may not lower recall."
    )
    updated_by: str | None = Field(description="Who set them last (null: never set).")
    updated_at: UtcTime | None = Field(description="When.")

    @classmethod
    def of(cls, s: SeveritySettings) -> SettingsOut:
        return cls(high_severity=s.high_severity, updated_by=s.updated_by, updated_at=s.updated_at)


# ---- helpers --------------------------------------------------------------------------
def _by(who: Principal) -> str:
    return f"key:{who.key_id}"


async def _blocking(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


async def _body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; an empty body is ``{}``."""
    try:
        return await json_model(request, model)
    except EmptyInput:
        return model()


def shadow_counts(svc: Services, tenant: str) -> dict[str, list[ShadowOut]]:
    """``tenant``'s shadow counts of its challengers, by category: added up over every
    process and restart (the database), with what this process counted and has not
    written yet. Blocking: call it in a thread."""
    out: dict[str, list[ShadowOut]] = {}
    for key, t in sorted(svc.heads.shadow.totals(tenant).items()):
        out.setdefault(key.category, []).append(
            ShadowOut(
                champion=key.champion,
                challenger=key.challenger,
                scored=t.scored,
                challenger_only=t.challenger_only,
                champion_only=t.champion_only,
            )
        )
    return out


def _head(h: CategoryHeads, shadow: dict[str, list[ShadowOut]]) -> HeadOut:
    challenger = h.alias(CHALLENGER)
    label = f"v{challenger}" if challenger is not None else None
    return HeadOut(
        category=h.category,
        slug=h.slug,
        model=h.name,
        champion=h.alias(CHAMPION),
        challenger=challenger,
        versions=[VersionOut.of(v) for v in h.versions],
        shadow=[s for s in shadow.get(h.category, []) if s.challenger == label],
    )


# ---- routes ---------------------------------------------------------------------------
@router.get(
    "/models",
    response_model=ModelsOut,
    summary="The built-in models and the tenant's heads, with every version",
)
async def list_models(who: Reader, svc: Svc) -> ModelsOut:
    promotions = svc.promotions
    built_in = await _blocking(promotions.registry.built_in_models)
    heads = await _blocking(lambda: promotions.heads(who.tenant_id))
    shadow = await _blocking(lambda: shadow_counts(svc, who.tenant_id))
    return ModelsOut(
        built_in=[
            BuiltInOut(
                analyzer=m.analyzer,
                type=m.type,
                model=m.model,
                version=m.version,
                categories=list(m.categories),
            )
            for m in built_in
        ],
        heads=[_head(h, shadow) for h in heads],
    )


@router.get(
    "/models/events",
    response_model=EventList,
    summary="The audit log of the tenant's heads, newest first",
)
async def list_events(
    who: Reader,
    svc: Svc,
    category: Annotated[
        str | None,
        Query(max_length=100, description="Only this category (its slug or its label)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> EventList:
    chosen = resolve_category(category) if category is not None else None
    page = await _blocking(
        lambda: svc.promotions.events(who.tenant_id, chosen, limit=limit, cursor=cursor)
    )
    return EventList(events=[EventOut.of(e) for e in page.events], next_cursor=page.next_cursor)


@router.get(
    "/models/settings", response_model=SettingsOut, summary="The tenant's promotion settings"
)
async def get_settings(who: Reader, svc: Svc) -> SettingsOut:
    return SettingsOut.of(await _blocking(lambda: svc.promotions.severity(who.tenant_id)))


@router.put(
    "/models/settings",
    response_model=SettingsOut,
    summary="Set the tenant's high-severity categories",
    openapi_extra=json_body_doc(SettingsIn),
)
async def put_settings(request: Request, who: Admin, svc: Svc) -> SettingsOut:
    body = await json_model(request, SettingsIn)
    done = await _blocking(
        lambda: svc.promotions.set_high_severity(who.tenant_id, body.high_severity, by=_by(who))
    )
    return SettingsOut.of(done)


@router.get(
    "/models/{category}",
    response_model=HeadOut,
    summary="The tenant's head for a category, with every version",
)
async def get_head(category: CategoryPath, who: Reader, svc: Svc) -> HeadOut:
    chosen = resolve_category(category)
    head = await _blocking(lambda: svc.promotions.versions(who.tenant_id, chosen))
    return _head(head, await _blocking(lambda: shadow_counts(svc, who.tenant_id)))


@router.get(
    "/models/{category}/checks",
    responses=CONFLICT,
    response_model=PromotionChecks,
    summary="What promoting a version would find, without promoting it",
)
async def check_promotion(
    category: CategoryPath,
    who: Reader,
    svc: Svc,
    version: Annotated[
        int | None,
        Query(ge=1, le=MAX_VERSION, description="The version; by default the challenger."),
    ] = None,
) -> PromotionChecks:
    chosen = resolve_category(category)
    return await _blocking(lambda: svc.promotions.check(who.tenant_id, chosen, version))


@router.post(
    "/models/{category}/promote",
    responses=CONFLICT,
    response_model=ActionOut,
    summary="Make a version (by default the challenger) the champion, if it beats it",
    openapi_extra=json_body_doc(PromoteIn),
)
async def promote(category: CategoryPath, request: Request, who: Admin, svc: Svc) -> ActionOut:
    chosen = resolve_category(category)
    body = await _body(request, PromoteIn)
    done = await _blocking(
        lambda: svc.promotions.promote(
            who.tenant_id,
            chosen,
            body.version,
            force=body.force,
            reason=body.reason,
            by=_by(who),
        )
    )
    return ActionOut.of(done)


@router.post(
    "/models/{category}/rollback",
    responses=CONFLICT,
    response_model=ActionOut,
    summary="Move the champion back to the previous one (or to a given version)",
    openapi_extra=json_body_doc(RollbackIn),
)
async def rollback(category: CategoryPath, request: Request, who: Admin, svc: Svc) -> ActionOut:
    chosen = resolve_category(category)
    body = await json_model(request, RollbackIn)
    done = await _blocking(
        lambda: svc.promotions.rollback(
            who.tenant_id, chosen, body.version, reason=body.reason, by=_by(who)
        )
    )
    return ActionOut.of(done)


@router.put(
    "/models/{category}/challenger",
    responses=CONFLICT,
    response_model=ActionOut,
    summary="Score a version in shadow beside the champion",
    openapi_extra=json_body_doc(ChallengerIn),
)
async def set_challenger(
    category: CategoryPath, request: Request, who: Admin, svc: Svc
) -> ActionOut:
    chosen = resolve_category(category)
    body = await json_model(request, ChallengerIn)
    done = await _blocking(
        lambda: svc.promotions.set_challenger(
            who.tenant_id, chosen, body.version, by=_by(who), reason=body.reason
        )
    )
    return ActionOut.of(done)


@router.delete(
    "/models/{category}/challenger",
    responses=CONFLICT,
    response_model=ActionOut,
    summary="Stop scoring the challenger",
)
async def clear_challenger(category: CategoryPath, who: Admin, svc: Svc) -> ActionOut:
    chosen = resolve_category(category)
    done = await _blocking(
        lambda: svc.promotions.clear_challenger(who.tenant_id, chosen, by=_by(who))
    )
    return ActionOut.of(done)
