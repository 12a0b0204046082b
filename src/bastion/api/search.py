"""Search over the tenant's media: ``GET /v1/search`` and find-similar.

* ``GET /v1/search?q=...`` (scope ``read``) finds moments of the tenant's media by words
  and by meaning (:meth:`SearchIndexer.search
  <bastion.search.indexer.SearchIndexer.search>`), filtered and paged by an opaque
  cursor. Each moment says where it is (media kind, ref, a link to its job or stream,
  time range), why it matched (its documents' fields and snippets: the text and the
  ``[start, end)`` character ranges of the query's words, also as parts flagged
  ``highlight`` so no client ever needs HTML), its labels, decision and thumbnail.
* ``GET /v1/search/similar?media=<ref>`` finds the tenant's media that looks like
  media it has indexed; ``POST /v1/search/similar`` like an uploaded image (multipart
  ``file``, the raw body, or JSON ``url`` / ``base64``: read with the same limits and
  errors as ``POST /v1/moderate``), embedded on this process's engine by the
  analyzer the index's image vectors come from.

Every query parameter takes one value (the API's rule): the list filters (``kind``,
``field``, ``media``, ``decision``, ``label``) take values separated by commas. What the
document's schema refuses is 422 ``invalid_request``; a query with no words is 400
``invalid_search_query``, a cursor of another search 400 ``invalid_cursor``, ``since``
not before ``until`` 400 ``invalid_time_range``. With search off (``search.enabled:
false``) every route answers 503 ``search_disabled``; without an image embedding model,
find-similar answers 503 ``similar_search_unavailable``; media the tenant has not
indexed (or another tenant's) is 404 ``media_not_indexed``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from bastion.api.auth import Reader
from bastion.api.errors import validated
from bastion.api.inputs import check_query, declared_length, receive_single, resolve
from bastion.api.openapi import ErrorResponse, image_request_body
from bastion.api.params import IsoDatetime
from bastion.api.services import Services, services
from bastion.errors import InputError
from bastion.samples.embedding import Embedder
from bastion.samples.errors import EmbeddingUnavailable
from bastion.search.errors import SearchDisabled, SimilarSearchUnavailable
from bastion.search.fusion import Moment
from bastion.search.indexer import SearchIndexer
from bastion.search.query import MAX_QUERY_CHARS, Snippet
from bastion.search.tables import FIELDS, MEDIA_KINDS
from bastion.search.text_index import SearchFilters, TextHit

router = APIRouter(prefix="/v1", tags=["search"])
Svc = Annotated[Services, Depends(services)]

MAX_MEDIA_FILTER = 100
"""Most media refs one search may be restricted to."""
MAX_LABEL_FILTER = 50
"""Most labels one search may name."""
MAX_REF_CHARS = 200
"""Longest media ref (a job id, a stream id, a sha256)."""
MAX_HITS_SHOWN = 20
"""Most documents shown per moment (the best-ranked)."""
DECISIONS: Final = ("allow", "review", "block")


def _one_of(values: tuple[str, ...]) -> str:
    """A pattern for one or more of ``values`` separated by commas."""
    word = "(" + "|".join(values) + ")"
    return f"^{word}(,{word})*$"


KIND_PATTERN = _one_of(MEDIA_KINDS)
FIELD_PATTERN = _one_of(FIELDS)
DECISION_PATTERN = _one_of(DECISIONS)
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$"
_LIST_ITEM = re.compile(r"[^,\x00-\x1f]{1,200}")


class InvalidTimeRange(InputError):
    """``since`` is not before ``until``: nothing could match."""

    code = "invalid_time_range"
    status = 400


def search_service(svc: Svc) -> SearchIndexer:
    """The process's search service; 503 ``search_disabled`` when search is off."""
    if svc.search is None:
        raise SearchDisabled("search is switched off on this server (search.enabled: false)")
    return svc.search


Search = Annotated[SearchIndexer, Depends(search_service)]

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorResponse,
        "description": "Search is switched off (`search_disabled`), or find-similar has no "
        "image embedding model (`similar_search_unavailable`), or the server is overloaded.",
    }
}
_NOT_INDEXED: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "The media is not indexed for this tenant (`media_not_indexed`).",
    }
}


# ---- what the answers say ---------------------------------------------------------------


class SnippetPart(BaseModel):
    """A run of a snippet's text: a match of the query, or the text around one."""

    text: str = Field(description="Plain text (never HTML: escape it where you render it).")
    highlight: bool = Field(description="This run matched a word of the query.")


class SnippetOut(BaseModel):
    """A window of a document's text around the query's words."""

    text: str = Field(description="Plain text (never HTML); `…` where it was cut.")
    highlights: list[tuple[int, int]] = Field(
        description="`[start, end)` character offsets into `text` of each match, sorted, "
        "not overlapping."
    )
    parts: list[SnippetPart] = Field(
        description="`text` split at the highlights, in order: render each part escaped, "
        "marking those with `highlight`."
    )

    @classmethod
    def of(cls, snippet: Snippet) -> SnippetOut:
        return cls(
            text=snippet.text,
            highlights=[(s, e) for s, e in snippet.highlights],
            parts=[SnippetPart(text=t, highlight=h) for t, h in snippet_parts(snippet)],
        )


def snippet_parts(snippet: Snippet) -> list[tuple[str, bool]]:
    """``snippet``'s text as (run, highlighted) pairs, in order, no empty run."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    text = snippet.text
    for start, end in snippet.highlights:
        start, end = max(start, pos), min(end, len(text))
        if start >= end:
            continue
        if start > pos:
            parts.append((text[pos:start], False))
        parts.append((text[start:end], True))
        pos = end
    if pos < len(text):
        parts.append((text[pos:], False))
    return parts


class MatchOut(BaseModel):
    """One document of a moment: what was seen or said that matched."""

    field: str = Field(
        description="What the text is: `label`, `tag`, `ocr`, `code`, `url`, "
        "`transcript`, `faces`, or `media` (the image itself, found by its look)."
    )
    language: str | None = Field(description="The text's language (ISO 639-1), when known.")
    start_s: float | None = Field(description="Where it starts in the media (null: untimed).")
    end_s: float | None = Field(description="Where it ends in the media (null: untimed).")
    score: float = Field(
        description="Its own relevance in the ranking that found it (comparable only within "
        "one answer)."
    )
    snippet: SnippetOut = Field(description="Its text around the query's words.")

    @classmethod
    def of(cls, hit: TextHit) -> MatchOut:
        return cls(
            field=hit.field,
            language=hit.language,
            start_s=hit.start_s,
            end_s=hit.end_s,
            score=hit.score,
            snippet=SnippetOut.of(hit.snippet),
        )


def media_url(kind: str, ref: str) -> str | None:
    """The API path of the job or stream a media ref names (None for a scan's sha256)."""
    if kind == "stream":
        return f"/v1/streams/{ref}"
    if ref.startswith("job_"):
        return f"/v1/jobs/{ref}"
    return None


class MomentOut(BaseModel):
    """A stretch of one piece of the tenant's media that matched, and why."""

    media_kind: str = Field(description="`image`, `video`, `stream` or `audio`.")
    media_ref: str = Field(description="The job id, stream id, or (a scan) the media's sha256.")
    media_url: str | None = Field(
        description="The API path of its job (`/v1/jobs/{id}`) or stream "
        "(`/v1/streams/{id}`); null for media indexed by a scan."
    )
    start_s: float | None = Field(description="Where the moment starts (null: an image).")
    end_s: float | None = Field(description="Where it ends (null: an image).")
    score: float = Field(
        description="Larger is better: the fused rank score of a search, the cosine "
        "similarity of find-similar."
    )
    decision: str | None = Field(description="The strictest decision in it, when known.")
    labels: list[str] = Field(description="Every taxonomy label of its documents, sorted.")
    thumbnail: str | None = Field(
        description="The API path of a JPEG of the moment (GET it with the same key); "
        "null when there is none."
    )
    snippet: SnippetOut = Field(description="Its best-ranked document's text around the words.")
    matches: list[MatchOut] = Field(
        description=f"Its documents, best-ranked first (at most {MAX_HITS_SHOWN})."
    )

    @classmethod
    def of(cls, moment: Moment) -> MomentOut:
        return cls(
            media_kind=moment.media_kind,
            media_ref=moment.media_ref,
            media_url=media_url(moment.media_kind, moment.media_ref),
            start_s=moment.start_s,
            end_s=moment.end_s,
            score=moment.score,
            decision=moment.decision,
            labels=list(moment.labels),
            thumbnail=moment.thumbnail,
            snippet=SnippetOut.of(moment.snippet),
            matches=[MatchOut.of(h) for h in moment.hits[:MAX_HITS_SHOWN]],
        )


class SearchResults(BaseModel):
    """One page of moments, best first."""

    moments: list[MomentOut] = Field(description="Best first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same query and filters) for the next page; "
        "null on the last page."
    )


class SimilarResults(BaseModel):
    """The moments that look most like the query image, most alike first."""

    moments: list[MomentOut] = Field(description="Most alike first.")


# ---- parameters -------------------------------------------------------------------------


def split_list(value: str | None, name: str, most: int) -> list[str] | None:
    """A comma-separated parameter as its distinct values (None when not given)."""
    if value is None:
        return None
    items = list(dict.fromkeys(v.strip() for v in value.split(",")))
    if any(not _LIST_ITEM.fullmatch(v) for v in items) or len(items) > most:
        raise InputError(
            f"{name} takes at most {most} values separated by commas, each 1 to "
            f"{MAX_REF_CHARS} characters",
            code="invalid_request",
            status=422,
            details={"field": name, "max_values": most},
        )
    return items


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


KindQuery = Annotated[
    str | None,
    Query(
        max_length=60,
        pattern=KIND_PATTERN,
        description=f"Only these kinds of media, separated by commas: {', '.join(MEDIA_KINDS)}.",
    ),
]
DecisionQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=DECISION_PATTERN,
        description="Only moments with one of these decisions, separated by commas: "
        "allow, review, block.",
    ),
]
LabelQuery = Annotated[
    str | None,
    Query(
        max_length=5000,
        description=f"Only moments with at least one of these taxonomy labels, separated by "
        f"commas (at most {MAX_LABEL_FILTER}), e.g. `QR Code Link,Blocked Word`.",
    ),
]
SinceFilter = Annotated[
    IsoDatetime | None,
    Query(description="Only media indexed at or after this time (ISO 8601; UTC if no zone)."),
]
UntilFilter = Annotated[
    IsoDatetime | None,
    Query(description="Only media indexed before this time (ISO 8601; UTC if no zone)."),
]


def make_filters(
    kind: str | None,
    decision: str | None,
    label: str | None,
    since: datetime | None,
    until: datetime | None,
    **more: object,
) -> SearchFilters:
    """Search filters from the API's (and the portal's) parameters: comma lists split,
    times without a zone taken as UTC; 422 ``invalid_request`` for what does not
    validate, 400 ``invalid_time_range`` when ``since`` is not before ``until``."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InvalidTimeRange("since must be before until")
    chosen = {
        "media_kinds": split_list(kind, "kind", len(MEDIA_KINDS)),
        "decisions": split_list(decision, "decision", len(DECISIONS)),
        "labels": split_list(label, "label", MAX_LABEL_FILTER),
        "since": since,
        "until": until,
        **more,
    }
    return validated(SearchFilters, chosen, "the search filters do not validate")


def search_filters(
    kind: KindQuery = None,
    field: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=FIELD_PATTERN,
            description="Only documents of these fields, separated by commas: "
            f"{', '.join(FIELDS)}.",
        ),
    ] = None,
    media: Annotated[
        str | None,
        Query(
            max_length=MAX_MEDIA_FILTER * (MAX_REF_CHARS + 1),
            description="Only these media (job ids, stream ids, sha256), separated by commas "
            f"(at most {MAX_MEDIA_FILTER}).",
        ),
    ] = None,
    decision: DecisionQuery = None,
    label: LabelQuery = None,
    language: Annotated[
        str | None,
        Query(
            max_length=35,
            pattern=LANGUAGE_PATTERN,
            description="Only documents in this language (ISO 639-1, e.g. `en`).",
        ),
    ] = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
) -> SearchFilters:
    """The filters of ``GET /v1/search``."""
    return make_filters(
        kind,
        decision,
        label,
        since,
        until,
        fields=split_list(field, "field", len(FIELDS)),
        media_refs=split_list(media, "media", MAX_MEDIA_FILTER),
        languages=None if language is None else [language.lower()],
    )


def similar_filters(
    kind: KindQuery = None,
    decision: DecisionQuery = None,
    label: LabelQuery = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
) -> SearchFilters:
    """The filters of find-similar."""
    return make_filters(kind, decision, label, since, until)


Filters = Annotated[SearchFilters, Depends(search_filters)]
SimilarFilters = Annotated[SearchFilters, Depends(similar_filters)]
KQuery = Annotated[int, Query(ge=1, le=100, description="How many moments to answer (1 to 100).")]


# ---- routes -----------------------------------------------------------------------------


@router.get(
    "/search",
    response_model=SearchResults,
    responses=_UNAVAILABLE,
    summary="Find moments of the tenant's media by words and by meaning",
)
async def search(
    who: Reader,
    index: Search,
    filters: Filters,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            description="What to look for: words (any language; found as words or, in "
            "languages without spaces, inside words) and their meaning. No query syntax: "
            "quotes, operators and punctuation only separate words.",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100, description="Moments per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the previous page."),
    ] = None,
) -> SearchResults:
    page = await asyncio.to_thread(
        index.search, who.tenant_id, q, filters, limit=limit, cursor=cursor
    )
    return SearchResults(
        moments=[MomentOut.of(m) for m in page.moments], next_cursor=page.next_cursor
    )


@router.get(
    "/search/similar",
    response_model=SimilarResults,
    responses={**_UNAVAILABLE, **_NOT_INDEXED},
    summary="Find the tenant's media that looks like media it has indexed",
)
async def similar_to_media(
    who: Reader,
    index: Search,
    filters: SimilarFilters,
    media: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_REF_CHARS,
            description="The indexed media to start from (a job id, stream id or sha256); "
            "it is left out of the answer.",
        ),
    ],
    k: KQuery = 10,
) -> SimilarResults:
    moments = await asyncio.to_thread(index.similar, who.tenant_id, media, k, filters)
    return SimilarResults(moments=[MomentOut.of(m) for m in moments])


_IMAGE_BODY = image_request_body(
    "The image as a multipart `file` (or `url`), the raw body (image/*), "
    'or JSON `{"url": ...}` / `{"base64": ...}`.'
)


def embedder_for(svc: Services, index: SearchIndexer) -> Embedder:
    """The embedder of the index's image vectors on this process's engine; 503
    ``similar_search_unavailable`` when there is none or it makes other vectors."""
    space = index.image_space
    if space is None:
        raise SimilarSearchUnavailable("no image embedding model is configured for search")
    try:
        embedder = Embedder(svc.engine, svc.settings.samples.embedding_analyzer)
    except EmbeddingUnavailable as exc:
        raise SimilarSearchUnavailable(exc.message) from None
    if str(embedder.model) != space.model:
        raise SimilarSearchUnavailable(
            f"this process embeds images with {embedder.model}, the index holds {space.model}"
        )
    return embedder


async def embed_upload(request: Request, svc: Services, embedder: Embedder) -> npt.NDArray[Any]:
    """The image of the request, read as ``POST /v1/moderate`` reads it, embedded."""
    svc.admission.check()  # a full server refuses before reading the body
    async with svc.admission.memory.hold(declared_length(request)) as held:
        received = await receive_single(request, svc.settings, None, held=held)
        async with svc.admission.slot():
            item = await resolve(received, svc.settings)
            async with svc.inflight:
                try:
                    decoded = await embedder.decode(item.data)
                    vector = await embedder.embed(decoded)
                except EmbeddingUnavailable as exc:
                    raise SimilarSearchUnavailable(exc.message) from None
    return np.asarray(vector, dtype=np.float32)


@router.post(
    "/search/similar",
    response_model=SimilarResults,
    responses=_UNAVAILABLE,
    openapi_extra=_IMAGE_BODY,
    summary="Find the tenant's media that looks like an uploaded image",
)
async def similar_to_upload(
    request: Request,
    who: Reader,
    svc: Svc,
    index: Search,
    filters: SimilarFilters,
    k: KQuery = 10,
) -> SimilarResults:
    check_query(request, {"k", "kind", "decision", "label", "since", "until"})
    embedder = embedder_for(svc, index)
    vector = await embed_upload(request, svc, embedder)
    moments = await asyncio.to_thread(index.similar, who.tenant_id, vector, k, filters)
    return SimilarResults(moments=[MomentOut.of(m) for m in moments])
