"""Corrections over REST: the right decision and labels for a job, a review item or a
stored result, and the labelled samples that decisions and corrections make.

``POST /v1/corrections`` (scope ``moderate``) has the effect of a moderator's decision:
it decides the target's review item (whoever holds it), creates the item already
decided when there is none, or corrects an item decided before; every correction is in
the item's audit log and goes out as a signed ``review.decided`` webhook whose
``source`` is ``api`` (see :meth:`bastion.review.service.ReviewService.correct`).
``GET /v1/corrections`` (scope ``read``) lists the tenant's decisions and corrections,
newest first, as samples to train on: the media they refer to, the labels before and
after, the models' decision and the people's. Whether media is kept for training is the
tenant's ``training_consent`` (``PATCH /v1/tenant``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.auth import Moderator, Reader
from bastion.api.params import IsoDatetime, json_body_doc, json_model
from bastion.api.reviews import MAX_NOTE_BODY, ActorOut, DecisionOut, LabelName, ReviewOut
from bastion.api.services import Services, services
from bastion.policy.model import POLICY_NAME
from bastion.review.service import MAX_LABEL_CHANGES, CorrectionTarget, Reviewer, Sample
from bastion.review.tables import DECISION_SOURCES
from bastion.store.repo import Principal
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["corrections"])
Svc = Annotated[Services, Depends(services)]
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class CorrectionIn(BaseModel):
    """A correction: exactly one target, the right decision, and the right labels as
    the full set (``labels``) or as changes (``add_labels``, ``remove_labels``)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = Field(
        None, min_length=1, max_length=64, description="A job of the tenant with a result."
    )
    review_id: str | None = Field(
        None, min_length=1, max_length=64, description="A review item of the tenant (`rev_…`)."
    )
    media_sha256: str | None = Field(
        None,
        pattern=SHA256_PATTERN,
        description="The sha256 (lower-case hex) of media whose result the tenant stored "
        "(a `POST /v1/moderate` or job result): the newest such result, or the newest "
        "under `policy`.",
    )
    policy: str | None = Field(
        None,
        pattern=POLICY_NAME,
        description="With `media_sha256`: the policy of the stored result to correct.",
    )
    decision: Literal["allow", "block"] = Field(description="The right decision.")
    labels: list[LabelName] | None = Field(
        None,
        max_length=MAX_LABEL_CHANGES,
        description="The full set of right taxonomy labels (instead of `add_labels` and "
        "`remove_labels`); an empty list removes every label.",
    )
    add_labels: list[LabelName] = Field(
        default_factory=list,
        max_length=MAX_LABEL_CHANGES,
        description="Taxonomy labels the media has that the result lacks.",
    )
    remove_labels: list[LabelName] = Field(
        default_factory=list,
        max_length=MAX_LABEL_CHANGES,
        description="Taxonomy labels of the result the media does not have.",
    )
    note: str = Field(
        "",
        max_length=MAX_NOTE_BODY,
        description="Why (at most `review.max_note_chars` characters).",
    )


class Corrected(BaseModel):
    item: ReviewOut = Field(description="The review item, decided as corrected.")
    decision: DecisionOut = Field(
        description="The decision the correction added to the item's audit log."
    )
    item_created: bool = Field(
        description="The target had no review item: one was created, already decided."
    )


class MediaRef(BaseModel):
    review_id: str = Field(description="The review item the sample is of.")
    kind: str | None = Field(
        description="`job`, `upload` (a synchronous call's bytes), `alert_thumbnail`, or "
        "null when the item has no media."
    )
    sha256: str | None = Field(description="The media's sha256 (jobs and uploads).")
    kept: bool = Field(
        description="Kept as a training sample: retention leaves the media (the tenant "
        "consented when this was decided)."
    )
    url: str | None = Field(
        description="Where the media is read (`GET /v1/reviews/{id}/media`; 410 once "
        "retention deleted media that was not kept)."
    )


class SampleOut(BaseModel):
    """One decision or correction as a labelled sample."""

    id: str = Field(description="The decision's id (`rvd_…`).")
    media: MediaRef = Field(description="The media the sample is of.")
    item_source: str = Field(
        description="What queued the item: `job`, `alert` or `api` (a synchronous call)."
    )
    item_source_id: str = Field(description="The job id, the alert id, or the upload key.")
    labels_before: list[str] = Field(description="The item's labels before this decision.")
    labels_after: list[str] = Field(description="The right labels, as decided.")
    added_labels: list[str] = Field(description="Labels the decision added.")
    removed_labels: list[str] = Field(description="Labels the decision removed.")
    decision: str = Field(description="The right decision: `allow` or `block`.")
    model_decision: str = Field(description="What Bastion decided (`review` for queued items).")
    corrected: bool = Field(
        description="The labels after differ from those before, or the decision from the "
        "models' decision."
    )
    source: str = Field(description="`moderator` or `api` (a correction).")
    action: str = Field(description="`approve`, `reject` or `correct`.")
    by: ActorOut = Field(description="Who decided: an API key or a signed-in user.")
    note: str = Field(description="Why, as the reviewer or the platform wrote it.")
    overrode_claim: str | None = Field(
        description="A correction of an item someone held: whose claim it overrode."
    )
    policy: str | None = Field(description="The policy the models' result was under.")
    policy_version: str | None = Field(description="That policy's version.")
    model_versions: dict[str, str] = Field(description="The analyzers' model versions.")
    decided_at: UtcTime = Field(description="When the decision was taken.")

    @classmethod
    def of(cls, sample: Sample, request: Request) -> SampleOut:
        d, item = sample.decision, sample.item
        media = item.media or {}
        url = None
        if item.media is not None:
            url = str(request.url_for("review_media", review_id=item.id))
        before, after = list(d.labels_before or []), list(d.labels_after or [])
        return cls(
            id=d.id,
            media=MediaRef(
                review_id=item.id,
                kind=str(media["kind"]) if "kind" in media else None,
                sha256=item.media_sha256,
                kept=d.media_kept,
                url=url,
            ),
            item_source=item.source,
            item_source_id=item.source_id,
            labels_before=before,
            labels_after=after,
            added_labels=d.added_labels or [],
            removed_labels=d.removed_labels or [],
            decision=str(d.decision),
            model_decision=d.model_decision,
            corrected=set(before) != set(after) or d.decision != d.model_decision,
            source=d.source,
            action=d.action,
            by=ActorOut(kind=d.actor_kind, id=d.actor_id),
            note=d.note,
            overrode_claim=d.overrode_claim,
            policy=d.policy,
            policy_version=d.policy_version,
            model_versions={str(k): str(v) for k, v in (d.model_versions or {}).items()},
            decided_at=d.decided_at,
        )


class SampleList(BaseModel):
    samples: list[SampleOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


def _reviewer(who: Principal) -> Reviewer:
    return Reviewer("key", who.key_id, admin="admin" in who.scopes)


@router.post(
    "/corrections",
    response_model=Corrected,
    status_code=201,
    summary="Correct a job, review item or stored result: the right decision and labels, "
    "with the effect of a moderator's decision",
    openapi_extra=json_body_doc(CorrectionIn),
)
async def create_correction(request: Request, who: Moderator, svc: Svc) -> Corrected:
    max_bytes = 64 * 1024 + 4 * svc.settings.review.max_note_chars
    body = await json_model(request, CorrectionIn, max_bytes)
    target = CorrectionTarget(
        job_id=body.job_id,
        review_id=body.review_id,
        media_sha256=body.media_sha256,
        policy=body.policy,
    )
    done = await run_in_threadpool(
        lambda: svc.review.correct(
            who.tenant_id,
            target,
            _reviewer(who),
            body.decision,
            labels=body.labels,
            add_labels=body.add_labels,
            remove_labels=body.remove_labels,
            note=body.note,
            media_stored=svc.jobs.media.exists,
        )
    )
    return Corrected(
        item=ReviewOut.of(done.item, request),
        decision=DecisionOut.of(done.decision),
        item_created=done.item_created,
    )


@router.get(
    "/corrections",
    response_model=SampleList,
    summary="Decisions and corrections as labelled samples, newest first",
)
async def list_corrections(
    request: Request,
    who: Reader,
    svc: Svc,
    source: Annotated[
        Literal["moderator", "api"] | None,
        Query(description=f"Only decisions of one source: {', '.join(DECISION_SOURCES)}."),
    ] = None,
    since: Annotated[
        IsoDatetime | None,
        Query(description="Only decided at or after this time (ISO 8601)."),
    ] = None,
    until: Annotated[
        IsoDatetime | None,
        Query(description="Only decided before this time (ISO 8601)."),
    ] = None,
    label: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Only samples with this taxonomy label before or after.",
        ),
    ] = None,
    corrected_only: Annotated[
        bool,
        Query(
            description="Only samples whose labels changed or whose decision differs from "
            "the models' decision."
        ),
    ] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> SampleList:
    page = await run_in_threadpool(
        lambda: svc.review.samples(
            who.tenant_id,
            source=source,
            since=since,
            until=until,
            label=label,
            corrected_only=corrected_only,
            limit=limit,
            cursor=cursor,
        )
    )
    return SampleList(
        samples=[SampleOut.of(s, request) for s in page.samples],
        next_cursor=page.next_cursor,
    )
