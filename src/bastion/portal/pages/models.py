"""The model registry in the browser: the built-in models, the tenant's own heads with
every version, promotion, rollback and challengers, the high-severity categories and the
audit log.

Any signed-in person may look; only admins act (``403 role_forbidden`` otherwise). The
pages call what ``/v1/models`` calls (:class:`bastion.registry.promotion.Promotions`,
the registry's built-in models, the shadow counts), every call in a thread
since each one blocks on the database or the registry. A refused promotion is shown on
the category's page with its figures (``409``), as are other refusals of an action
(a reason missing, no challenger, ...); an action done goes back to the page, which
says what was done and shows the new aliases. The promotion checks of a version are a
fragment the page loads after it is shown (htmx), since they score the held-out
samples. Another tenant's heads are not found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from bastion.api.models import MAX_VERSION, ShadowOut, shadow_counts
from bastion.api.services import Services, services
from bastion.errors import BastionError, InputError
from bastion.policy import taxonomy
from bastion.portal.editor import form_text
from bastion.portal.people import AdminPerson, Person, Viewer
from bastion.portal.templating import render
from bastion.registry.checks import PromotionChecks
from bastion.registry.config import category_slug
from bastion.registry.heads import CHALLENGER, CHAMPION
from bastion.registry.promotion import (
    MAX_REASON,
    CategoryHeads,
    PromotionRefused,
    resolve_category,
)
from bastion.registry.tables import ModelEvent
from bastion.training.tables import SUCCEEDED

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
Slug = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        description="The category's slug (`knives-and-blades`) or its taxonomy label.",
    ),
]
T = TypeVar("T")
EVENTS_SHOWN = 20
MAX_SEVERE = 200
MAX_FIELD = MAX_REASON * 4
"""Longest text field read (longer reasons are refused by the promotions, in words)."""
DONE = {
    "promoted": "The version was promoted: it is the champion now.",
    "forced": "The version was promoted over the checks: it is the champion now.",
    "rolled_back": "The champion was rolled back.",
    "challenger": "The version is the challenger now: it is scored in shadow.",
    "cleared": "The challenger was cleared.",
    "severity": "The high-severity categories were saved.",
}
"""What the page says after an action (``?done=``)."""


def number(value: Any, digits: int = 3) -> str:
    """A score for people: ``digits`` decimals, a dash when there is none."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–"
    return f"{value:.{digits}f}"


def formatters() -> dict[str, Callable[..., str]]:
    """What the registry and training templates format with: scores, a category's slug,
    an audit event's action."""
    return {"number": number, "slug": category_slug, "event_label": event_label}


async def blocking(call: Callable[[], T]) -> T:
    """``call`` in a thread (the registry and the database block)."""
    return await asyncio.to_thread(call)


async def people_names(svc: Services, tenant: str) -> dict[str, str]:
    """``user:<id>`` → the person's name, for the tenant's people (who did what)."""
    users = await blocking(lambda: svc.accounts.list_users(tenant))
    return {f"user:{u.id}": u.display_name or u.username for u in users}


@dataclass(frozen=True)
class HeadView:
    """A category's head as the pages show it: versions, aliases, the challenger's
    disagreements with the champion seen by this process, whether the tenant marks the
    category high-severity, and the training run that made each version (when one did)."""

    head: CategoryHeads
    shadow: list[ShadowOut]
    high_severity: bool = False
    runs: Mapping[int, str] = field(default_factory=dict)

    @property
    def champion(self) -> int | None:
        return self.head.alias(CHAMPION)

    @property
    def challenger(self) -> int | None:
        return self.head.alias(CHALLENGER)


def _view(
    head: CategoryHeads,
    shadow: Mapping[str, list[ShadowOut]],
    high_severity: Iterable[str],
    runs: Mapping[int, str] | None = None,
) -> HeadView:
    """The head with the shadow counts of its current challenger (an earlier one's are
    not this one's)."""
    challenger = head.alias(CHALLENGER)
    label = f"v{challenger}" if challenger is not None else None
    current = [s for s in shadow.get(head.category, []) if s.challenger == label]
    high = bool(set(high_severity) & set(taxonomy.lineage(head.category)))
    return HeadView(head, current, high, runs or {})


def _done(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


def _shown_on_page(exc: BastionError) -> bool:
    """Refusals shown on the page; not found and roles are error pages."""
    return exc.status not in (401, 403, 404)


def _refused_checks(exc: PromotionRefused) -> PromotionChecks | None:
    """The figures a refusal carries, or None when they cannot be read."""
    try:
        return PromotionChecks.model_validate(exc.details.get("checks"))
    except ValidationError:
        return None


def _version(form: FormData, name: str = "version", *, required: bool = False) -> int | None:
    """A version number of a form (None when left empty and not ``required``)."""
    text = form_text(form, name, 20).strip()
    if not text:
        if required:
            raise InputError("choose a version", code="version_required", status=422)
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise InputError(f"not a version number: {text[:20]!r}", status=422)
    return int(text)


def _runs_by_version(svc: Services, tenant: str, category: str) -> dict[int, str]:
    """The succeeded training runs of the category by the version each registered."""
    page = svc.training_runs.list_runs(tenant, category=category, status=SUCCEEDED, limit=200)
    return {r.model_version: r.id for r in page.runs if r.model_version is not None}


# ---- the list -------------------------------------------------------------------------
async def _list_page(
    request: Request,
    who: Person,
    svc: Services,
    *,
    error: BastionError | None = None,
) -> Response:
    tenant = who.tenant_id
    built_in, heads, severity, events, names, shadow = await asyncio.gather(
        blocking(svc.heads.registry.built_in_models),
        blocking(partial(svc.promotions.heads, tenant)),
        blocking(partial(svc.promotions.severity, tenant)),
        blocking(partial(svc.promotions.events, tenant, limit=EVENTS_SHOWN)),
        people_names(svc, tenant),
        blocking(partial(shadow_counts, svc, tenant)),
    )
    context = {
        "built_in": built_in,
        "heads": [_view(h, shadow, severity.high_severity) for h in heads],
        "severity": severity,
        "taxonomy_tree": [(l1, taxonomy.children(l1)) for l1 in taxonomy.L1],
        "events": events.events,
        "names": names,
        "error": error,
        "notice": _done(request),
        **formatters(),
    }
    return render(request, "models.html", context, status=error.status if error else 200)


@router.get("/portal/models")
async def models_page(request: Request, who: Viewer, svc: Svc) -> Response:
    return await _list_page(request, who, svc)


@router.post("/portal/models/settings")
async def save_severity(request: Request, who: AdminPerson, svc: Svc) -> Response:
    form = await request.form()
    chosen = [str(v)[:100] for v in form.getlist("high_severity")]
    try:
        if len(chosen) > MAX_SEVERE:
            raise InputError(f"at most {MAX_SEVERE} categories", status=422)
        await blocking(
            lambda: svc.promotions.set_high_severity(who.tenant_id, chosen, by=who.actor)
        )
    except BastionError as exc:
        if not _shown_on_page(exc):
            raise
        return await _list_page(request, who, svc, error=exc)
    return RedirectResponse("/portal/models?done=severity", status_code=303)


# ---- one category -----------------------------------------------------------------------
async def _head_page(
    request: Request,
    who: Person,
    svc: Services,
    category: str,
    *,
    error: BastionError | None = None,
    refused: PromotionChecks | None = None,
    values: Mapping[str, str] | None = None,
) -> Response:
    tenant = who.tenant_id
    head, runs, events, severity, names, shadow = await asyncio.gather(
        blocking(partial(svc.promotions.versions, tenant, category)),
        blocking(partial(_runs_by_version, svc, tenant, category)),
        blocking(partial(svc.promotions.events, tenant, category, limit=EVENTS_SHOWN)),
        blocking(partial(svc.promotions.severity, tenant)),
        people_names(svc, tenant),
        blocking(partial(shadow_counts, svc, tenant)),
    )
    context = {
        "view": _view(head, shadow, severity.high_severity, runs),
        "events": events.events,
        "names": names,
        "error": error,
        "refused": refused,
        "values": values or {},
        "notice": _done(request),
        "max_reason": MAX_REASON,
        **formatters(),
    }
    return render(request, "models_head.html", context, status=error.status if error else 200)


@router.get("/portal/models/{slug}")
async def head_page(request: Request, slug: Slug, who: Viewer, svc: Svc) -> Response:
    return await _head_page(request, who, svc, resolve_category(slug))


@router.get("/portal/models/{slug}/checks")
async def head_checks(
    request: Request,
    slug: Slug,
    who: Viewer,
    svc: Svc,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> Response:
    """The promotion checks' figures of a version (default: the challenger), without
    acting: a fragment the category's page loads."""
    category = resolve_category(slug)
    await blocking(partial(svc.promotions.versions, who.tenant_id, category))  # or not found
    context: dict[str, object] = {"checks": None, "error": None, **formatters()}
    try:
        context["checks"] = await blocking(
            lambda: svc.promotions.check(who.tenant_id, category, version)
        )
    except BastionError as exc:
        if exc.status in (401, 403):
            raise
        context["error"] = exc
    return render(request, "models_checks.html", context)


async def _act(
    request: Request,
    who: Person,
    svc: Services,
    slug: str,
    work: Callable[[FormData, str], Awaitable[str]],
) -> Response:
    """Run one action on a category (``work`` answers what was done); refusals are shown
    on the category's page with what was typed."""
    category = resolve_category(slug)
    form = await request.form()
    values = {k: form_text(form, k, MAX_FIELD) for k in ("version", "reason", "op")}
    try:
        done = await work(form, category)
    except PromotionRefused as exc:
        return await _head_page(
            request, who, svc, category, error=exc, refused=_refused_checks(exc), values=values
        )
    except BastionError as exc:
        if not _shown_on_page(exc):
            raise
        return await _head_page(request, who, svc, category, error=exc, values=values)
    return RedirectResponse(
        f"/portal/models/{category_slug(category)}?done={done}", status_code=303
    )


@router.post("/portal/models/{slug}/promote")
async def promote(request: Request, slug: Slug, who: AdminPerson, svc: Svc) -> Response:
    """Promote a version (default: the challenger); ``force`` with a ``reason`` overrides
    the checks."""

    async def work(form: FormData, category: str) -> str:
        version = _version(form)
        force = form_text(form, "force", 8) in ("1", "on", "true")
        reason = form_text(form, "reason", MAX_FIELD)
        await blocking(
            partial(
                svc.promotions.promote,
                who.tenant_id,
                category,
                version,
                force=force,
                reason=reason,
                by=who.actor,
            )
        )
        return "forced" if force else "promoted"

    return await _act(request, who, svc, slug, work)


@router.post("/portal/models/{slug}/rollback")
async def rollback(request: Request, slug: Slug, who: AdminPerson, svc: Svc) -> Response:
    """Move the champion back (to the one before it, or a version chosen); needs a reason."""

    async def work(form: FormData, category: str) -> str:
        version = _version(form)
        reason = form_text(form, "reason", MAX_FIELD)
        await blocking(
            partial(
                svc.promotions.rollback,
                who.tenant_id,
                category,
                version,
                reason=reason,
                by=who.actor,
            )
        )
        return "rolled_back"

    return await _act(request, who, svc, slug, work)


@router.post("/portal/models/{slug}/challenger")
async def set_challenger(request: Request, slug: Slug, who: AdminPerson, svc: Svc) -> Response:
    """Score a version in shadow beside the champion."""

    async def work(form: FormData, category: str) -> str:
        version = _version(form, required=True)
        if version is None:  # _version raised already
            raise InputError("choose a version", status=422)
        reason = form_text(form, "reason", MAX_FIELD)
        await blocking(
            partial(
                svc.promotions.set_challenger,
                who.tenant_id,
                category,
                version,
                by=who.actor,
                reason=reason,
            )
        )
        return "challenger"

    return await _act(request, who, svc, slug, work)


@router.post("/portal/models/{slug}/challenger/clear")
async def clear_challenger(request: Request, slug: Slug, who: AdminPerson, svc: Svc) -> Response:
    """Stop scoring the challenger."""

    async def work(form: FormData, category: str) -> str:
        reason = form_text(form, "reason", MAX_FIELD)
        await blocking(
            partial(
                svc.promotions.clear_challenger,
                who.tenant_id,
                category,
                by=who.actor,
                reason=reason,
            )
        )
        return "cleared"

    return await _act(request, who, svc, slug, work)


def event_label(event: ModelEvent) -> str:
    """An audit event's action in words."""
    words = {
        "promote": "promoted",
        "rollback": "rolled back",
        "set_challenger": "made challenger",
        "clear_challenger": "cleared challenger",
    }
    text = words.get(event.action, event.action)
    if event.outcome == "refused":
        return "promotion refused"
    return f"{text} (forced)" if event.forced else text
