"""The search page: find moments of the tenant's media, and media that looks alike.

``/portal/search`` is a plain GET form (it works without script) over the same service
and filters as ``GET /v1/search``; each result is a card with the moment's thumbnail,
its media, time range, labels, decision and snippet (the template wraps the query's
words in ``<mark>`` from the snippet's ranges, every part escaped), a link to narrow the
search to that media, and "more like this" for media indexed with an image embedding.
``/portal/search/similar?media=<ref>`` shows what looks like that media
(``GET /v1/search/similar``). Paging follows the search's cursor.

Thumbnails are API paths (``/v1/jobs/{id}/thumbnails/{name}``,
``/v1/streams/{id}/thumbnails/{name}``); the portal serves the same files at
``/portal/search/thumbnails/{jobs|streams}/{id}/{name}`` after finding the job or stream
in the person's tenant. Any signed-in person may search (viewers included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from bastion.api.search import MomentOut, make_filters
from bastion.api.services import Services, services
from bastion.errors import BastionError, InputError, NotFound
from bastion.portal.people import Person, Viewer
from bastion.portal.templating import render
from bastion.search.errors import SearchDisabled
from bastion.search.fusion import Moment
from bastion.search.indexer import SearchIndexer
from bastion.search.query import MAX_QUERY_CHARS
from bastion.search.tables import FIELDS, MEDIA_KINDS
from bastion.search.text_index import SearchFilters

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
PAGE_SIZE = 20
SIMILAR_K = 20
_THUMBNAIL = re.compile(
    r"/v1/(jobs|streams)/([^/?#]{1,128})/thumbnails/([0-9a-f]{32}(?:\.latest)?\.jpg)"
)
_Text = Annotated[str | None, Query(max_length=200)]


class InvalidPortalTime(InputError):
    """A from/to date on the search form that is not a date or a date-time."""

    code = "invalid_time"
    status = 400


@dataclass(frozen=True)
class Card:
    """A moment as the page shows it."""

    moment: MomentOut
    when: str | None
    """The time range as ``m:ss–m:ss`` (None: an image)."""
    thumbnail_url: str | None
    """The portal's URL of its thumbnail."""
    media_page: str | None
    """The portal's page of its media (a stream), when there is one."""
    only_this: str
    """The same search narrowed to its media."""
    similar_url: str | None
    """"More like this": only for media indexed with an image embedding."""


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_range(start: float | None, end: float | None) -> str | None:
    """A moment's time range for people (None when it has none)."""
    if start is None:
        return None
    if end is None or int(end) == int(start):
        return clock(start)
    return f"{clock(start)}–{clock(end)}"


def portal_thumbnail(api_path: str | None) -> str | None:
    """The portal's URL of a thumbnail given as an API path (None if not one)."""
    found = _THUMBNAIL.fullmatch(api_path or "")
    if found is None:
        return None
    source, owner, name = found.groups()
    return f"/portal/search/thumbnails/{source}/{quote(owner, safe='')}/{name}"


def page_url(path: str, params: dict[str, str | None]) -> str:
    """``path`` with the parameters that have a value."""
    kept = {k: v for k, v in params.items() if v}
    return f"{path}?{urlencode(kept)}" if kept else path


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _time(value: str | None, name: str, *, end_of_day: bool) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidPortalTime(
            f"{name} must be a date (YYYY-MM-DD) or a date-time, not {value[:40]!r}"
        ) from None
    if end_of_day and len(value) == 10:  # a day given as the end: the whole day counts
        parsed += timedelta(days=1)
    return parsed


def _with_embeddings(index: SearchIndexer, tenant: str, refs: list[str]) -> set[str]:
    """Which of ``refs`` have an image embedding in the tenant's index."""
    if index.image_space is None:
        return set()
    return {ref for ref in refs if index.text.media_documents(tenant, ref, ["media"])}


def _cards(
    index: SearchIndexer, tenant: str, moments: list[Moment], base: dict[str, str | None]
) -> list[Card]:
    refs = list(dict.fromkeys(m.media_ref for m in moments))
    similar = _with_embeddings(index, tenant, refs)
    cards = []
    for m in moments:
        shown = MomentOut.of(m)
        cards.append(
            Card(
                moment=shown,
                when=time_range(m.start_s, m.end_s),
                thumbnail_url=portal_thumbnail(m.thumbnail),
                media_page=f"/portal/streams/{quote(m.media_ref, safe='')}"
                if m.media_kind == "stream"
                else None,
                only_this=page_url("/portal/search", {**base, "media": m.media_ref}),
                similar_url=page_url("/portal/search/similar", {"media": m.media_ref})
                if m.media_ref in similar
                else None,
            )
        )
    return cards


def _index(svc: Services) -> SearchIndexer:
    if svc.search is None:
        raise SearchDisabled("search is switched off on this server (search.enabled: false)")
    return svc.search


def _context(form: dict[str, str | None]) -> dict[str, object]:
    return {
        "form": form,
        "kinds": MEDIA_KINDS,
        "fields": FIELDS,
        "decisions": ("allow", "review", "block"),
        "max_query": MAX_QUERY_CHARS,
        "cards": None,
        "next_url": None,
        "error": None,
    }


@router.get("/portal/search")
async def search_page(
    request: Request,
    who: Viewer,
    svc: Svc,
    q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS)] = None,
    kind: _Text = None,
    field: _Text = None,
    media: _Text = None,
    decision: _Text = None,
    label: _Text = None,
    language: _Text = None,
    since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    form = {
        "q": _blank(q),
        "kind": _blank(kind),
        "field": _blank(field),
        "media": _blank(media),
        "decision": _blank(decision),
        "label": _blank(label),
        "language": _blank(language),
        "from": _blank(since),
        "to": _blank(until),
    }
    context = _context(form)
    if form["q"] is None:
        return render(request, "search.html", context)
    try:
        index = _index(svc)
        filters = make_filters(
            form["kind"],
            form["decision"],
            form["label"],
            _time(form["from"], "from", end_of_day=False),
            _time(form["to"], "to", end_of_day=True),
            fields=None if form["field"] is None else [form["field"]],
            media_refs=None if form["media"] is None else [form["media"]],
            languages=None if form["language"] is None else [form["language"].lower()],
        )
        cards, next_cursor = await run_in_threadpool(
            _search, index, who, form["q"], filters, _blank(cursor), form
        )
    except BastionError as exc:
        context["error"] = exc
        return render(request, "search.html", context, status=exc.status)
    context["cards"] = cards
    if next_cursor is not None:
        context["next_url"] = page_url("/portal/search", {**form, "cursor": next_cursor})
    return render(request, "search.html", context)


def _search(
    index: SearchIndexer,
    who: Person,
    q: str,
    filters: SearchFilters,
    cursor: str | None,
    form: dict[str, str | None],
) -> tuple[list[Card], str | None]:
    page = index.search(who.tenant_id, q, filters, limit=PAGE_SIZE, cursor=cursor)
    return _cards(index, who.tenant_id, page.moments, form), page.next_cursor


@router.get("/portal/search/similar")
async def similar_page(
    request: Request,
    who: Viewer,
    svc: Svc,
    media: Annotated[str, Query(min_length=1, max_length=200)],
) -> Response:
    context = _context({"q": None, "media": media})
    context["similar_to"] = media
    try:
        index = _index(svc)
        moments = await run_in_threadpool(index.similar, who.tenant_id, media, SIMILAR_K)
        cards = await run_in_threadpool(_cards, index, who.tenant_id, moments, {})
    except BastionError as exc:
        context["error"] = exc
        return render(request, "search.html", context, status=exc.status)
    context["cards"] = cards
    return render(request, "search.html", context)


@router.get("/portal/search/thumbnails/{source}/{owner}/{name}")
async def search_thumbnail(
    source: Literal["jobs", "streams"],
    owner: Annotated[str, Path(max_length=128)],
    name: Annotated[str, Path(max_length=64)],
    who: Viewer,
    svc: Svc,
) -> FileResponse:
    """A moment's thumbnail: the file behind its API path, for the person's tenant only."""
    if source == "jobs":
        job = await run_in_threadpool(svc.jobs.get, who.tenant_id, owner)
        path = svc.jobs.thumbnails.path(job.id, name)
    else:
        stream = await run_in_threadpool(svc.streams.get, who.tenant_id, owner)
        path = svc.live_thumbnails.path(stream.id, name)
    if path is None or not await run_in_threadpool(path.is_file):
        raise NotFound(f"no thumbnail {name!r}", code="thumbnail_not_found")
    return FileResponse(
        path,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
