"""A tenant's labelled samples over REST: list with filters, read one, its media, delete.

``GET /v1/samples`` (scope ``read``) lists the tenant's samples newest first, filtered
as a librarian would: one source (``moderator``, ``api``, ``import``), a period of when
the labels were given, a category (a taxonomy label; an L1 label covers its L2 labels),
only corrected samples. ``DELETE /v1/samples/{id}`` (scope ``admin``) deletes a sample
and its embeddings, and its media unless anything of any tenant still refers to the
same bytes (see :mod:`bastion.samples.service`). Samples are made by workers from
decisions that kept their media, and by ``bastion samples import``; embeddings are never
computed in this process.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from bastion.api.auth import Admin, Reader
from bastion.api.params import IsoDatetime
from bastion.api.reviews import content_type
from bastion.api.services import Services, services
from bastion.errors import BastionError
from bastion.samples.service import SampleFilter, SampleView
from bastion.samples.tables import SOURCES
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["samples"])
Svc = Annotated[Services, Depends(services)]
SampleId = Annotated[str, Path(max_length=64, description="A sample's id (`smp_…`).")]


class SampleMedia(BaseModel):
    sha256: str | None = Field(description="The media's sha256 (null: the sample has none).")
    kind: str | None = Field(description="`image` or `video`, or null.")
    format: str | None = Field(description="The image format (`JPEG`, `PNG`, ...).")
    url: str | None = Field(description="Where the media is read (`GET /v1/samples/{id}/media`).")


class SampleEmbeddingOut(BaseModel):
    model: str = Field(description="The embedding model's name (`efficientnet-lite0`).")
    version: str = Field(description="Its version (the weights' digest).")
    analyzer: str = Field(description="The analyzer that computed it.")
    dim: int = Field(description="How many values the vector has.")


class LabelledSample(BaseModel):
    """One labelled sample."""

    id: str = Field(description="The sample's id (`smp_…`).")
    media: SampleMedia = Field(description="The media the sample is of.")
    labels: list[str] = Field(description="The right taxonomy labels.")
    categories: list[str] = Field(description="The labels and their L1 parents.")
    decision: str | None = Field(description="`allow` or `block`, when known.")
    model_labels: list[str] | None = Field(
        description="The labels the models gave (null for imports)."
    )
    model_decision: str | None = Field(
        description="What Bastion decided (`review` for queued items; null for imports)."
    )
    corrected: bool = Field(description="The labels or the decision differ from the models'.")
    source: str = Field(description="`moderator`, `api` (a correction) or `import`.")
    taken_by: str = Field(description="`user:<id>`, `key:<id>` or `cli:<name>`.")
    taken_at: UtcTime = Field(description="When the labels were given.")
    origin: str | None = Field(description="The file's path in the imported folder.")
    review_item_id: str | None = Field(description="The review item of a decision's sample.")
    review_decision_id: str | None = Field(
        description="The item's latest decision, whose labels the sample has."
    )
    embeddings: list[SampleEmbeddingOut] = Field(description="The embeddings it carries.")
    created_at: UtcTime = Field(description="When the sample was made.")
    updated_at: UtcTime = Field(
        description="When it last changed (a later decision of its item moves it on)."
    )

    @classmethod
    def of(cls, view: SampleView, request: Request) -> LabelledSample:
        s = view.sample
        url = None
        if s.media_sha256 is not None:
            url = str(request.url_for("sample_media", sample_id=s.id))
        return cls(
            id=s.id,
            media=SampleMedia(
                sha256=s.media_sha256, kind=s.media_kind, format=s.media_format, url=url
            ),
            labels=list(s.labels or []),
            categories=list(s.categories or []),
            decision=s.decision,
            model_labels=None if s.model_labels is None else list(s.model_labels),
            model_decision=s.model_decision,
            corrected=s.corrected,
            source=s.source,
            taken_by=s.taken_by,
            taken_at=s.taken_at,
            origin=s.origin,
            review_item_id=s.review_item_id,
            review_decision_id=s.review_decision_id,
            embeddings=[
                SampleEmbeddingOut(
                    model=e.model.name, version=e.model.version, analyzer=e.analyzer, dim=e.dim
                )
                for e in view.embeddings
            ],
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class LabelledSampleList(BaseModel):
    samples: list[LabelledSample] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class SampleDeleted(BaseModel):
    id: str = Field(description="The deleted sample's id.")
    media_deleted: bool = Field(
        description="The media file was deleted with it (false: something else still "
        "refers to the same bytes, or they were stored again moments ago; retention "
        "removes them once nothing wants them)."
    )


@router.get(
    "/samples",
    response_model=LabelledSampleList,
    summary="The tenant's labelled samples, newest first, with a librarian's filters",
)
async def list_samples(
    request: Request,
    who: Reader,
    svc: Svc,
    source: Annotated[
        Literal["moderator", "api", "import"] | None,
        Query(description=f"Only samples of one source: {', '.join(SOURCES)}."),
    ] = None,
    since: Annotated[
        IsoDatetime | None,
        Query(description="Only labelled at or after this time (ISO 8601)."),
    ] = None,
    until: Annotated[
        IsoDatetime | None,
        Query(description="Only labelled before this time (ISO 8601)."),
    ] = None,
    category: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Only samples with this taxonomy label (an L1 label covers its L2s).",
        ),
    ] = None,
    corrected_only: Annotated[
        bool,
        Query(description="Only samples whose labels or decision differ from the models'."),
    ] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> LabelledSampleList:
    chosen = SampleFilter(source, since, until, category, corrected_only)
    page = await run_in_threadpool(
        lambda: svc.samples.list_samples(who.tenant_id, chosen, limit=limit, cursor=cursor)
    )
    return LabelledSampleList(
        samples=[LabelledSample.of(v, request) for v in page.samples], next_cursor=page.next_cursor
    )


@router.get("/samples/{sample_id}", response_model=LabelledSample, summary="One sample")
async def get_sample(
    sample_id: SampleId, request: Request, who: Reader, svc: Svc
) -> LabelledSample:
    view = await run_in_threadpool(svc.samples.get, who.tenant_id, sample_id)
    return LabelledSample.of(view, request)


@router.get(
    "/samples/{sample_id}/media",
    response_class=FileResponse,
    name="sample_media",
    summary="A sample's media",
)
async def sample_media(sample_id: SampleId, who: Reader, svc: Svc) -> FileResponse:
    path = await run_in_threadpool(svc.samples.media_path, who.tenant_id, sample_id)
    if not await run_in_threadpool(path.is_file):
        raise BastionError(
            f"the media of sample {sample_id} is gone", code="media_expired", status=410
        )
    return FileResponse(
        path,
        media_type=await run_in_threadpool(content_type, path),
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.delete(
    "/samples/{sample_id}",
    response_model=SampleDeleted,
    summary="Delete a sample, its embeddings and (unless anything else refers to the same "
    "bytes) its media",
)
async def delete_sample(sample_id: SampleId, who: Admin, svc: Svc) -> SampleDeleted:
    done = await run_in_threadpool(svc.samples.delete, who.tenant_id, sample_id)
    return SampleDeleted(id=done.id, media_deleted=done.media_deleted)
