"""Alerts of live streams: list, read, acknowledge, dismiss, stop; their frames; the feed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from bastion.api.alert_socket import serve_alert_feed
from bastion.api.auth import Moderator, Reader
from bastion.api.params import SinceQuery
from bastion.api.services import Services, services
from bastion.errors import BastionError, NotFound
from bastion.live.alerts.view import AlertOut
from bastion.live.tables import ALERT_STATES

router = APIRouter(prefix="/v1", tags=["alerts"])
Svc = Annotated[Services, Depends(services)]


class AlertList(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


router.add_api_websocket_route("/alerts/ws", serve_alert_feed, name="alert_feed")


@router.get("/alerts", response_model=AlertList, summary="Alerts, newest first")
async def list_alerts(
    who: Reader,
    svc: Svc,
    state: Annotated[str | None, Query(description=f"One of {', '.join(ALERT_STATES)}.")] = None,
    stream_id: Annotated[str | None, Query(max_length=128)] = None,
    channel: Annotated[str | None, Query(max_length=256)] = None,
    since: SinceQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> AlertList:
    page = await run_in_threadpool(
        lambda: svc.alerts.list(
            who.tenant_id,
            state=state,
            stream_id=stream_id,
            channel=channel,
            since=since,
            limit=limit,
            cursor=cursor,
        )
    )
    return AlertList(alerts=[AlertOut.of(a) for a in page.alerts], next_cursor=page.next_cursor)


@router.get("/alerts/{alert_id}", response_model=AlertOut)
async def get_alert(alert_id: str, who: Reader, svc: Svc) -> AlertOut:
    return AlertOut.of(await run_in_threadpool(svc.alerts.get, who.tenant_id, alert_id))


def _action(name: str, doc: str) -> Any:
    async def act(alert_id: str, who: Moderator, svc: Svc) -> AlertOut:
        alert = await run_in_threadpool(
            getattr(svc.alerts, name), who.tenant_id, alert_id, f"key:{who.key_id}"
        )
        return AlertOut.of(alert)

    act.__name__ = f"{name}_alert"
    act.__doc__ = doc
    return act


for _name, _doc in (
    ("acknowledge", "open → acknowledged: a moderator is on it."),
    ("dismiss", "open or acknowledged → dismissed: not a violation, or dealt with."),
    (
        "stop",
        "open or acknowledged → stream_stopped: stops the stream, calls the platform's "
        "stop hook and closes the stream's other open alerts.",
    ),
):
    router.add_api_route(
        f"/alerts/{{alert_id}}/{_name}",
        _action(_name, _doc),
        methods=["POST"],
        response_model=AlertOut,
        summary=f"{_name.capitalize()} an alert",
    )


@router.get(
    "/alerts/{alert_id}/thumbnail",
    response_class=FileResponse,
    summary="The latest frame the alert's rule fired on, as a JPEG",
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def alert_thumbnail(alert_id: str, who: Reader, svc: Svc) -> FileResponse:
    alert = await run_in_threadpool(svc.alerts.get, who.tenant_id, alert_id)
    if alert.thumbnail is None:
        raise NotFound(f"alert {alert_id} has no thumbnail", code="thumbnail_not_found")
    path = svc.live_thumbnails.path(alert.stream_pk, alert.thumbnail)
    if not await run_in_threadpool(path.is_file):
        raise BastionError(
            f"the thumbnail of alert {alert_id} was deleted after the retention period",
            code="thumbnail_expired",
            status=410,
        )
    return FileResponse(
        path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )
