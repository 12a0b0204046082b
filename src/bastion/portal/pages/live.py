"""The live view: a grid of the tenant's streams, and one stream's page.

``/portal/live`` shows each stream as a tile (status, channel, counters, open alerts,
the latest analysed frame), filtered by status and channel; ``static/live.js`` keeps the
tiles current from the push channel's ``stream.updated`` messages and fetches the tile
of a stream it has not shown yet from ``/portal/live/tiles/{stream_id}``.
``/portal/streams/{stream_id}`` is one stream: its tile, and its alerts as a timeline
with the frames they fired on and why. Moderators may stop it there
(``POST /portal/streams/{stream_id}/stop``): the same service as
``POST /v1/streams/{id}/stop``, so the platform's stop hook is called and the stream's
open alerts are closed. Frames are served to signed-in people of the stream's tenant at
``/portal/streams/{stream_id}/thumbnail``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from bastion.api.services import Services, services
from bastion.errors import NotFound
from bastion.live.alerts.view import AlertOut
from bastion.live.counters import stream_counters
from bastion.live.stream_view import StreamTile, sensitive, thumbnail_path
from bastion.live.tables import STREAM_STATES
from bastion.portal.people import ModeratorPerson, Viewer
from bastion.portal.templating import render

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
StreamId = Annotated[str, Path(max_length=128)]
TIMELINE_ALERTS = 100
ALL = "all"
"""The status filter that shows stopped streams too."""


class ShownAlert(BaseModel):
    """An alert with what the portal adds to show it."""

    model_config = ConfigDict(extra="forbid")

    alert: AlertOut = Field(description="The alert as the API gives it.")
    thumbnail_url: str | None = Field(description="Its frame, served to signed-in people.")
    sensitive: bool = Field(description="Explicit or gory labels: shown blurred.")


def shown_alert(alert: AlertOut, thumbnail: str | None) -> ShownAlert:
    url = f"/portal/alerts/{alert.id}/thumbnail?v={thumbnail[:12]}" if thumbnail else None
    names = [label.name for label in alert.labels]
    return ShownAlert(alert=alert, thumbnail_url=url, sensitive=sensitive(names))


def tile_context(tile: StreamTile) -> dict[str, object]:
    """What ``fragments/tile.html`` shows of a tile."""
    return {
        "tile": tile,
        "stream": tile.stream,
        "counters": stream_counters(tile.stream.counters),
        "thumb": thumbnail_path(tile.stream.stream_id, tile.frame_version),
    }


def _filters(status: str | None, channel: str | None) -> tuple[str | None, bool, str | None]:
    """The status to ask for, whether ended streams count, and the channel."""
    if status == ALL:
        return None, True, channel or None
    return (status or None), False, channel or None


async def _tiles(
    svc: Services, tenant_id: str, status: str | None, channel: str | None
) -> list[StreamTile]:
    wanted, ended, chan = _filters(status, channel)
    views = svc.stream_feed.views
    return await run_in_threadpool(
        lambda: views.tiles(tenant_id, status=wanted, channel=chan, include_ended=ended)
    )


StatusQuery = Annotated[str | None, Query(max_length=32)]
ChannelQuery = Annotated[str | None, Query(max_length=256)]


@router.get("/portal/live")
async def live_page(
    request: Request,
    who: Viewer,
    svc: Svc,
    status: StatusQuery = None,
    channel: ChannelQuery = None,
) -> Response:
    tiles = await _tiles(svc, who.tenant_id, status, channel)
    channels = await run_in_threadpool(svc.stream_feed.views.channels, who.tenant_id)
    context = {
        "tiles": [tile_context(t) for t in tiles],
        "status": status or "",
        "channel": channel or "",
        "statuses": STREAM_STATES,
        "channels": channels,
    }
    return render(request, "live.html", context)


@router.get("/portal/live/tiles")
async def live_tiles(
    request: Request,
    who: Viewer,
    svc: Svc,
    status: StatusQuery = None,
    channel: ChannelQuery = None,
) -> Response:
    """The grid's tiles alone (the page catches up with them after a reconnect)."""
    tiles = await _tiles(svc, who.tenant_id, status, channel)
    return render(request, "fragments/tiles.html", {"tiles": [tile_context(t) for t in tiles]})


@router.get("/portal/live/tiles/{stream_id}")
async def live_tile(request: Request, stream_id: StreamId, who: Viewer, svc: Svc) -> Response:
    tile = await run_in_threadpool(svc.stream_feed.views.tile, who.tenant_id, stream_id)
    return render(request, "fragments/tile.html", tile_context(tile))


@router.get("/portal/streams/{stream_id}/thumbnail")
async def stream_thumbnail(stream_id: StreamId, who: Viewer, svc: Svc) -> FileResponse:
    """The stream's latest analysed frame, as a JPEG."""
    tile = await run_in_threadpool(svc.stream_feed.views.tile, who.tenant_id, stream_id)
    if tile.frame is None:
        raise NotFound(f"stream {stream_id!r} has no frame yet", code="thumbnail_not_found")
    path = svc.live_thumbnails.path(tile.stream.id, tile.frame)
    if not await run_in_threadpool(path.is_file):
        raise NotFound(f"stream {stream_id!r} has no frame yet", code="thumbnail_not_found")
    return FileResponse(path, media_type="image/jpeg")


def _timeline_events(tile: StreamTile) -> list[tuple[datetime, str, str]]:
    row = tile.stream
    events = [(row.created_at, "registered", f"registered on channel {row.channel}")]
    if row.stopped_at is not None:
        why = f"stopped by {row.stopped_by or 'unknown'}: {row.status_reason or ''}".rstrip(": ")
        events.append((row.stopped_at, "stopped", why))
    return events


@router.get("/portal/streams/{stream_id}")
async def stream_page(request: Request, stream_id: StreamId, who: Viewer, svc: Svc) -> Response:
    tile = await run_in_threadpool(svc.stream_feed.views.tile, who.tenant_id, stream_id)
    page = await run_in_threadpool(
        lambda: svc.alerts.list(who.tenant_id, stream_id=stream_id, limit=TIMELINE_ALERTS)
    )
    alerts = [shown_alert(AlertOut.of(a), a.thumbnail) for a in page.alerts]
    context = {
        **tile_context(tile),
        "alerts": alerts,
        "more_alerts": page.next_cursor is not None,
        "events": sorted(_timeline_events(tile), reverse=True),
        "can_stop": who.may("moderator") and tile.stream.desired == "running",
    }
    return render(request, "stream.html", context)


@router.post("/portal/streams/{stream_id}/stop")
async def stop_stream(
    request: Request, stream_id: StreamId, who: ModeratorPerson, svc: Svc
) -> Response:
    """Stop the broadcast: the stop hook is called and its open alerts are closed."""
    await run_in_threadpool(
        lambda: svc.alerts.stop_stream(
            who.tenant_id, stream_id, by=who.actor, reason="stopped by a moderator"
        )
    )
    target = f"/portal/streams/{stream_id}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
