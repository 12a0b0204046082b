"""The review queue over REST: list and read items, claim the next one, decide, release,
the audit log of decisions, and the media a reviewer opens.

Reading needs the ``read`` scope; claiming, deciding and releasing need ``moderate``. The
reviewer is the API key: its claims are its own, and an ``admin`` key may decide items
it does not hold. Bodies are read with :func:`bastion.api.params.json_model` (bounded,
parsed off the event loop). ``POST /v1/reviews/claim`` answers 404
``nothing_to_review`` when the queue has nothing to claim now.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from bastion.api.auth import Moderator, Reader
from bastion.api.params import json_body_doc, json_model
from bastion.api.services import Services, services
from bastion.errors import BastionError, NotFound
from bastion.media.image import sniff
from bastion.review.config import QUEUE_NAME_PATTERN
from bastion.review.service import MAX_LABEL_CHANGES, Reviewer
from bastion.review.tables import ITEM_STATES, ReviewDecision, ReviewItem
from bastion.store.repo import Principal
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["reviews"])
Svc = Annotated[Services, Depends(services)]
ReviewId = Annotated[str, Path(max_length=64, description="A review item's id (`rev_…`).")]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_NOTE_BODY = 100_000

_IMAGE_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_VIDEO_TYPES = {
    "MP4 video": "video/mp4",
    "QuickTime video": "video/quicktime",
    "3GPP video": "video/3gpp",
    "WebM/Matroska video": "video/webm",
}


class ReviewOut(BaseModel):
    id: str
    queue: str
    priority: int = Field(description="Higher is reviewed first.")
    status: str = Field(description=f"One of {', '.join(ITEM_STATES)}.")
    source: str = Field(
        description="`job`, `alert` (a live rule whose action is `review`) or `api` (a "
        "`POST /v1/moderate?review=true` call)."
    )
    source_id: str = Field(
        description="The job id, the alert id, or `upload:<sha256>:<policy digest>` of a "
        "synchronous call."
    )
    rule: str | None = Field(None, description="The live rule that raised it (alerts).")
    reasons: list[dict[str, Any]] = Field(description="What sent it to review.")
    categories: list[str] = Field(description="Taxonomy labels of the reasons and their L1.")
    labels: list[str] = Field(description="Its labels now, with reviewers' corrections.")
    model_decision: str = Field(description="What Bastion decided (`review`).")
    decision: str | None = Field(None, description="The reviewers' `allow` or `block`.")
    policy: str | None
    policy_version: str | None
    result: dict[str, Any] | None = Field(
        None,
        description="The moderation result when it was queued (an alert's: the alert); "
        "left out of lists.",
    )
    media: dict[str, Any] | None = Field(None, description="What the media is.")
    media_url: str | None = Field(None, description="Where a reviewer opens the media.")
    created_at: UtcTime
    updated_at: UtcTime
    claimed_by: str | None = Field(None, description="`key:<id>` or `user:<id>`.")
    lease_expires_at: UtcTime | None = Field(
        None, description="Until when the claim holds; after it anyone may claim the item."
    )
    claims: int
    escalations: int
    decided_at: UtcTime | None

    @classmethod
    def of(cls, item: ReviewItem, request: Request, *, full: bool = True) -> ReviewOut:
        media_url = None
        if item.media is not None:
            media_url = str(request.url_for("review_media", review_id=item.id))
        return cls(
            id=item.id,
            queue=item.queue,
            priority=item.priority,
            status=item.status,
            source=item.source,
            source_id=item.source_id,
            rule=item.rule,
            reasons=item.reasons or [],
            categories=item.categories or [],
            labels=item.labels or [],
            model_decision=item.model_decision,
            decision=item.decision,
            policy=item.policy,
            policy_version=item.policy_version,
            result=item.result if full else None,
            media=item.media,
            media_url=media_url,
            created_at=item.created_at,
            updated_at=item.updated_at,
            claimed_by=item.claimed_by,
            lease_expires_at=item.lease_expires_at,
            claims=item.claims,
            escalations=item.escalations,
            decided_at=item.decided_at,
        )


class ReviewList(BaseModel):
    items: list[ReviewOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class ActorOut(BaseModel):
    kind: str = Field(description="`user` or `key`.")
    id: str


class DecisionOut(BaseModel):
    id: str
    item_id: str
    by: ActorOut
    action: str = Field(description="`approve`, `reject`, `escalate`, or `correct` (a correction).")
    source: str = Field(
        description="`moderator` (the portal or `/v1/reviews`) or `api` (`POST /v1/corrections`)."
    )
    decision: str | None = Field(description="`allow`, `block`, or null (escalated).")
    queue: str = Field(description="The queue the item was in.")
    escalated_to: str | None
    labels_before: list[str]
    labels_after: list[str]
    added_labels: list[str]
    removed_labels: list[str]
    note: str
    model_decision: str
    model_versions: dict[str, Any]
    policy: str | None
    policy_version: str | None
    decided_at: UtcTime
    media_kept: bool = Field(
        description="The item's media is kept as a training sample (the tenant consented "
        "when this was decided, and the item has media)."
    )
    overrode_claim: str | None = Field(
        None,
        description="A correction of an item someone held: whose claim it overrode "
        "(`key:<id>` or `user:<id>`).",
    )

    @classmethod
    def of(cls, d: ReviewDecision) -> DecisionOut:
        return cls(
            id=d.id,
            item_id=d.item_id,
            by=ActorOut(kind=d.actor_kind, id=d.actor_id),
            action=d.action,
            source=d.source,
            decision=d.decision,
            queue=d.queue,
            escalated_to=d.escalated_to,
            labels_before=d.labels_before or [],
            labels_after=d.labels_after or [],
            added_labels=d.added_labels or [],
            removed_labels=d.removed_labels or [],
            note=d.note,
            model_decision=d.model_decision,
            model_versions=d.model_versions or {},
            policy=d.policy,
            policy_version=d.policy_version,
            decided_at=d.decided_at,
            media_kept=d.media_kept,
            overrode_claim=d.overrode_claim,
        )


class DecisionList(BaseModel):
    decisions: list[DecisionOut]


class Decided(BaseModel):
    item: ReviewOut
    decision: DecisionOut


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(
        None,
        pattern=QUEUE_NAME_PATTERN,
        description="The queue to take an item from; the default queue when left out.",
    )


class DecideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "reject", "escalate"] = Field(
        description="`approve` decides allow, `reject` block; `escalate` sends the item, "
        "open again, to the escalation queue at a higher priority."
    )
    add_labels: list[LabelName] = Field(
        default_factory=list,
        max_length=MAX_LABEL_CHANGES,
        description="Taxonomy labels the reviewer adds.",
    )
    remove_labels: list[LabelName] = Field(
        default_factory=list,
        max_length=MAX_LABEL_CHANGES,
        description="Taxonomy labels the reviewer removes.",
    )
    note: str = Field(
        "",
        max_length=MAX_NOTE_BODY,
        description="Why (at most `review.max_note_chars` characters).",
    )
    stop_stream: StrictBool = Field(
        False,
        description="With `reject`, on the item of a live alert: also stop the alert's "
        "stream (its stop hook is called). An alert's item decided without it: approve "
        "dismisses the alert, reject acknowledges it.",
    )


def _reviewer(who: Principal) -> Reviewer:
    return Reviewer("key", who.key_id, admin="admin" in who.scopes)


@router.get("/reviews", response_model=ReviewList, summary="Review items, newest first")
async def list_reviews(
    request: Request,
    who: Reader,
    svc: Svc,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[
        str | None, Query(max_length=16, description=f"One of {', '.join(ITEM_STATES)}.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ReviewList:
    page = await run_in_threadpool(
        lambda: svc.review.list_items(
            who.tenant_id, queue=queue, status=status, limit=limit, cursor=cursor
        )
    )
    return ReviewList(
        items=[ReviewOut.of(i, request, full=False) for i in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/reviews/claim",
    response_model=ReviewOut,
    summary="Claim the next item of a queue (highest priority, then oldest) under a lease",
    openapi_extra=json_body_doc(ClaimIn),
)
async def claim_review(request: Request, who: Moderator, svc: Svc) -> ReviewOut:
    body = await json_model(request, ClaimIn)
    queue = body.queue or svc.settings.review.default_queue
    item = await run_in_threadpool(svc.review.claim_next, who.tenant_id, queue, _reviewer(who))
    return ReviewOut.of(item, request)


@router.get("/reviews/{review_id}", response_model=ReviewOut, name="get_review")
async def get_review(review_id: ReviewId, request: Request, who: Reader, svc: Svc) -> ReviewOut:
    item = await run_in_threadpool(svc.review.get, who.tenant_id, review_id)
    return ReviewOut.of(item, request)


@router.post(
    "/reviews/{review_id}/decide",
    response_model=Decided,
    summary="Approve, reject or escalate an item you hold (admins: any undecided item)",
    openapi_extra=json_body_doc(DecideIn),
)
async def decide_review(review_id: ReviewId, request: Request, who: Moderator, svc: Svc) -> Decided:
    max_bytes = 64 * 1024 + 4 * svc.settings.review.max_note_chars
    body = await json_model(request, DecideIn, max_bytes)
    item, decision = await run_in_threadpool(
        lambda: svc.review.decide(
            who.tenant_id,
            review_id,
            _reviewer(who),
            body.action,
            add_labels=body.add_labels,
            remove_labels=body.remove_labels,
            note=body.note,
            stop_stream=body.stop_stream,
        )
    )
    return Decided(item=ReviewOut.of(item, request), decision=DecisionOut.of(decision))


@router.post(
    "/reviews/{review_id}/release",
    response_model=ReviewOut,
    summary="Hand an item you hold back to its queue",
)
async def release_review(
    review_id: ReviewId, request: Request, who: Moderator, svc: Svc
) -> ReviewOut:
    item = await run_in_threadpool(svc.review.release, who.tenant_id, review_id, _reviewer(who))
    return ReviewOut.of(item, request)


@router.get(
    "/reviews/{review_id}/decisions",
    response_model=DecisionList,
    summary="Every decision taken on an item, oldest first (the audit log)",
)
async def review_decisions(review_id: ReviewId, who: Reader, svc: Svc) -> DecisionList:
    rows = await run_in_threadpool(svc.review.decisions, who.tenant_id, review_id)
    return DecisionList(decisions=[DecisionOut.of(d) for d in rows])


def content_type(path: FilePath) -> str:
    """The media type of a stored file, from its first bytes (never from a name)."""
    with open(path, "rb") as f:
        found = sniff(f.read(8192))
    if found.pillow_format in _IMAGE_TYPES:
        return _IMAGE_TYPES[found.pillow_format]
    return _VIDEO_TYPES.get(found.name, "application/octet-stream")


def media_path(svc: Services, item: ReviewItem) -> FilePath | None:
    """Where an item's media is stored (the file may be gone since), or None when the
    item has none."""
    media = item.media or {}
    if media.get("kind") in ("job", "upload"):
        return svc.jobs.media.path(str(media["sha256"]))
    if media.get("kind") == "alert_thumbnail":
        return svc.live_thumbnails.path(str(media["stream_pk"]), str(media["name"]))
    return None


async def media_response(svc: Services, tenant_id: str, review_id: str) -> FileResponse:
    """The media of a tenant's item as a file answer (the API's and the portal's)."""
    item = await run_in_threadpool(svc.review.get, tenant_id, review_id)
    path = media_path(svc, item)
    if path is None:
        raise NotFound(f"review item {review_id} has no media", code="review_media_not_found")
    if not await run_in_threadpool(path.is_file):
        raise BastionError(
            f"the media of review item {review_id} was deleted after the retention period",
            code="media_expired",
            status=410,
        )
    return FileResponse(
        path,
        media_type=await run_in_threadpool(content_type, path),
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/reviews/{review_id}/media",
    response_class=FileResponse,
    name="review_media",
    summary="The media of an item: a job's image or video, a synchronous call's image, "
    "or an alert's frame",
)
async def review_media(review_id: ReviewId, who: Reader, svc: Svc) -> FileResponse:
    return await media_response(svc, who.tenant_id, review_id)
