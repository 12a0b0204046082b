"""The review queue in the portal: the queues, the work view, an item with its audit
log, and the tenant's audit log.

``/portal/review`` lists the tenant's queues with their counts and the latest items.
``/portal/review/{queue}/work`` is where a moderator works through a queue with the
keyboard: ``static/review.js`` claims an item (``POST .../claim``, which answers the
item's card as HTML, or ``204`` when there is nothing to claim), shows it, and at once
claims the next one in the background, so deciding (``POST
/portal/review/items/{id}/decide``, one transaction) swaps the next card in without
waiting for the server to find it. A prefetched claim holds a lease like any claim:
leaving the page hands every held item back (``POST /portal/review/release``, sent with
``navigator.sendBeacon`` and the CSRF token as a form field), and a lease that is never
handed back runs out after ``review.lease_s``. A skipped item is handed back and left out
of this page's later claims.

Viewers see the queues, the items and the audit logs; claiming, deciding and releasing
need the moderator role (``403 role_forbidden``); admins may decide an undecided item
they do not hold (its page shows them the controls).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bastion.api.params import json_model
from bastion.api.reviews import DecideIn, media_response
from bastion.api.services import Services, services
from bastion.errors import InputError
from bastion.policy import taxonomy
from bastion.portal.pages.review_view import (
    ItemView,
    actor_name,
    claimer_name,
    find_media_kind,
    item_view,
    may_decide,
    taxonomy_names,
)
from bastion.portal.people import ModeratorPerson, Viewer
from bastion.portal.templating import render
from bastion.review.config import QUEUE_NAME_PATTERN
from bastion.review.errors import (
    NothingToReview,
    ReviewAlreadyDecided,
    ReviewLeaseLost,
    ReviewNotFound,
    UnknownQueue,
)
from bastion.review.service import MAX_EXCLUDED, DecisionPage, QueueCounts, ReviewPage
from bastion.review.tables import ITEM_STATES, ReviewDecision, ReviewItem

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
ItemId = Annotated[str, Path(max_length=64)]
QueueName = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN)]
ItemRef = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PAGE = 50
MAX_RELEASE = 20
"""Most items one release (the page being left) hands back."""


class ClaimIn(BaseModel):
    """What the work view sends with a claim."""

    model_config = ConfigDict(extra="forbid")

    exclude: list[ItemRef] = Field(
        default_factory=list,
        max_length=MAX_EXCLUDED,
        description="Items this page skipped: not to be claimed again from it.",
    )


def _card(svc: Services) -> dict[str, Any]:
    """What the item card needs besides the item."""
    return {"known_labels": taxonomy.CATEGORIES, "max_note": svc.settings.review.max_note_chars}


def _names(svc: Services, tenant_id: str) -> dict[str, str]:
    """The tenant's people by user id, as the pages name them."""
    return {u.id: u.display_name or u.username for u in svc.accounts.list_users(tenant_id)}


# ---- the queues ------------------------------------------------------------------------


@router.get("/portal/review")
async def queues(
    request: Request,
    who: Viewer,
    svc: Svc,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    if status is not None and status not in ITEM_STATES:
        raise InputError(f"status must be one of {list(ITEM_STATES)}", code="invalid_status")

    def read() -> tuple[list[QueueCounts], ReviewPage, dict[str, str]]:
        counts = svc.review.queue_counts(who.tenant_id)
        page = svc.review.list_items(
            who.tenant_id, queue=queue, status=status, limit=PAGE, cursor=cursor
        )
        return counts, page, _names(svc, who.tenant_id)

    counts, page, names = await run_in_threadpool(read)
    return render(
        request,
        "review.html",
        {
            "queues": counts,
            "page": page,
            "views": [item_view(i) for i in page.items],
            "queue": queue,
            "status": status,
            "states": ITEM_STATES,
            "names": names,
            "claimer_name": claimer_name,
            "moderator": who.may("moderator"),
        },
    )


@router.get("/portal/review/decisions")
async def decision_log(
    request: Request,
    who: Viewer,
    svc: Svc,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    def read() -> tuple[DecisionPage, dict[str, str]]:
        page = svc.review.decision_log(who.tenant_id, limit=PAGE, cursor=cursor)
        return page, _names(svc, who.tenant_id)

    page, names = await run_in_threadpool(read)
    return render(
        request,
        "review_decisions.html",
        {"page": page, "names": names, "actor_name": actor_name},
    )


# ---- working through a queue -----------------------------------------------------------


@router.get("/portal/review/{queue}/work")
async def work(request: Request, queue: QueueName, who: Viewer, svc: Svc) -> Response:
    moderator = who.may("moderator")

    def read() -> tuple[list[QueueCounts], list[ReviewItem]]:
        counts = svc.review.queue_counts(who.tenant_id, queue)
        waiting: list[ReviewItem] = []
        if counts and not moderator:
            waiting = svc.review.list_items(
                who.tenant_id, queue=queue, status="open", limit=PAGE
            ).items
        return counts, waiting

    counts, waiting = await run_in_threadpool(read)
    if not counts:
        known = sorted(svc.settings.review.queue_names)
        raise UnknownQueue(f"no review queue {queue!r}; queues: {known}")
    return render(
        request,
        "review_work.html",
        {
            "queue": queue,
            "counts": counts[0],
            "moderator": moderator,
            "waiting": [item_view(i) for i in waiting],
            "claimer_name": claimer_name,
            "taxonomy": taxonomy_names(),
        },
    )


@router.get("/portal/review/{queue}/waiting")
async def waiting(queue: QueueName, who: Viewer, svc: Svc) -> JSONResponse:
    """The queue's counts now: ``open`` (to claim), ``claimed``, ``decided`` (the work
    view asks while it is empty, and for its heading)."""
    counts = await run_in_threadpool(svc.review.queue_counts, who.tenant_id, queue)
    found = counts[0] if counts else None
    return JSONResponse(
        {
            "open": found.open if found else 0,
            "claimed": found.claimed if found else 0,
            "decided": found.decided if found else 0,
        }
    )


@router.post("/portal/review/{queue}/claim")
async def claim(request: Request, queue: QueueName, who: ModeratorPerson, svc: Svc) -> Response:
    """Claim the queue's next item for this person: its card, or ``204`` when there is
    nothing to claim now."""
    body = await json_model(request, ClaimIn)

    def take() -> Response | None:
        try:
            item = svc.review.claim_next(who.tenant_id, queue, who.reviewer, exclude=body.exclude)
        except NothingToReview:
            return None
        view = item_view(item, find_media_kind(svc, item))
        return render(request, "review_card.html", {"view": view, "decide": True, **_card(svc)})

    card = await run_in_threadpool(take)
    return card if card is not None else Response(status_code=204)


@router.post("/portal/review/items/{item_id}/decide")
async def decide(request: Request, item_id: ItemId, who: ModeratorPerson, svc: Svc) -> JSONResponse:
    """Approve, reject or escalate an item (one transaction); a short JSON answer, whose
    ``Server-Timing`` header says how long reading the body and deciding took here."""
    started = time.perf_counter()
    max_bytes = 64 * 1024 + 4 * svc.settings.review.max_note_chars
    body = await json_model(request, DecideIn, max_bytes)
    item, decision = await run_in_threadpool(
        lambda: svc.review.decide(
            who.tenant_id,
            item_id,
            who.reviewer,
            body.action,
            add_labels=body.add_labels,
            remove_labels=body.remove_labels,
            note=body.note,
            stop_stream=body.stop_stream,
        )
    )
    return JSONResponse(
        {
            "item": {
                "id": item.id,
                "status": item.status,
                "decision": item.decision,
                "queue": item.queue,
                "labels": item.labels,
            },
            "decision": {"id": decision.id, "action": decision.action},
        },
        headers={"Server-Timing": f"decide;dur={(time.perf_counter() - started) * 1000:.1f}"},
    )


@router.post("/portal/review/items/{item_id}/release")
async def release(item_id: ItemId, who: ModeratorPerson, svc: Svc) -> Response:
    """Hand an item back to its queue (skip it)."""
    await run_in_threadpool(svc.review.release, who.tenant_id, item_id, who.reviewer)
    return Response(status_code=204)


@router.post("/portal/review/release")
async def release_held(request: Request, who: ModeratorPerson, svc: Svc) -> Response:
    """Hand back the items a page held (``ids`` form fields), as the page is left; an
    item decided, taken over or gone since is passed over."""
    form = await request.form()
    ids = [v for v in form.getlist("ids") if isinstance(v, str) and 0 < len(v) <= 64]
    if len(ids) > MAX_RELEASE:
        raise InputError(f"at most {MAX_RELEASE} items at once", code="too_many_items", status=422)

    def give_back() -> None:
        for item_id in dict.fromkeys(ids):
            try:
                svc.review.release(who.tenant_id, item_id, who.reviewer)
            except (ReviewLeaseLost, ReviewAlreadyDecided, ReviewNotFound):
                continue

    await run_in_threadpool(give_back)
    return Response(status_code=204)


# ---- one item ------------------------------------------------------------------------


@router.get("/portal/review/items/{item_id}")
async def item_page(request: Request, item_id: ItemId, who: Viewer, svc: Svc) -> Response:
    def read() -> tuple[ItemView, list[ReviewDecision], dict[str, str]]:
        item = svc.review.get(who.tenant_id, item_id)
        decisions = svc.review.decisions(who.tenant_id, item_id)
        view = item_view(item, find_media_kind(svc, item))
        return view, decisions, _names(svc, who.tenant_id)

    view, decisions, names = await run_in_threadpool(read)
    return render(
        request,
        "review_item.html",
        {
            "view": view,
            "decisions": decisions,
            "names": names,
            "actor_name": actor_name,
            "claimer_name": claimer_name,
            "decide": may_decide(
                view.item, who.reviewer.ref, moderator=who.may("moderator"), admin=who.may("admin")
            ),
            "taxonomy": taxonomy_names(),
            **_card(svc),
        },
    )


@router.get("/portal/review/items/{item_id}/media")
async def item_media(item_id: ItemId, who: Viewer, svc: Svc) -> FileResponse:
    return await media_response(svc, who.tenant_id, item_id)
