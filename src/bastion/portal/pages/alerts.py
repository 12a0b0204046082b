"""The alerts inbox: a tenant's alerts, newest first, worked from the keyboard.

``/portal/alerts`` lists the unresolved alerts (``open`` and ``acknowledged``) by
default, filtered by state, rule, channel and stream, each with the frame its rule fired
on (blurred when its labels are explicit or gory), the labels that fired, the rule and
why, the stream and the time. ``static/alerts.js`` adds the alerts the push channel
announces at the top (fetching each row from ``/portal/alerts/{id}/row``), refreshes the
rows that change, and catches up after a reconnect from ``/portal/alerts/rows``.
Moderators acknowledge, dismiss or stop the stream of an alert with the same services as
``POST /v1/alerts/{id}/acknowledge|dismiss|stop`` (stopping calls the platform's stop
hook); each answers with the alert's row as it is now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from bastion.api.services import Services, services
from bastion.errors import BastionError, InputError, NotFound
from bastion.live.alerts.service import AlertPage
from bastion.live.alerts.view import AlertOut
from bastion.live.tables import ALERT_STATES, OPEN_ALERT_STATES, Alert
from bastion.portal.pages.live import ShownAlert, shown_alert
from bastion.portal.people import ModeratorPerson, Person, Viewer
from bastion.portal.templating import render

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
AlertId = Annotated[str, Path(max_length=64)]
View = Literal["row", "item"]
"""How an alert is shown: a row of the inbox, or an entry of a stream's timeline."""
UNRESOLVED = "unresolved"
ALL = "all"
STATE_CHOICES = (UNRESOLVED, *ALERT_STATES, ALL)
PAGE_SIZE = 50
TEMPLATES: dict[str, str] = {"row": "fragments/alert_row.html", "item": "fragments/alert_item.html"}


def _states(state: str) -> list[str] | None:
    """The states a filter value stands for (None: any)."""
    if state == UNRESOLVED:
        return list(OPEN_ALERT_STATES)
    if state == ALL:
        return None
    if state not in ALERT_STATES:
        raise InputError(f"state must be one of {list(STATE_CHOICES)}", code="invalid_state")
    return [state]


class Filters:
    """The inbox's filters, from the query string."""

    def __init__(
        self,
        state: Annotated[str, Query(max_length=32)] = UNRESOLVED,
        rule: Annotated[str | None, Query(max_length=128)] = None,
        channel: Annotated[str | None, Query(max_length=256)] = None,
        stream: Annotated[str | None, Query(max_length=128)] = None,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> None:
        self.state = state or UNRESOLVED
        self.states = _states(self.state)
        self.rule = rule or None
        self.channel = channel or None
        self.stream = stream or None
        self.cursor = cursor or None

    def query(self, **changes: str | None) -> str:
        values = {
            "state": self.state,
            "rule": self.rule,
            "channel": self.channel,
            "stream": self.stream,
            **changes,
        }
        return urlencode({k: v for k, v in values.items() if v})


Filtered = Annotated[Filters, Depends()]


def shown(alert: Alert) -> ShownAlert:
    return shown_alert(AlertOut.of(alert), alert.thumbnail)


async def _page(svc: Services, who: Person, f: Filters) -> AlertPage:
    return await run_in_threadpool(
        lambda: svc.alerts.list(
            who.tenant_id,
            states=f.states,
            rule=f.rule,
            channel=f.channel,
            stream_id=f.stream,
            limit=PAGE_SIZE,
            cursor=f.cursor,
        )
    )


def _rows_context(page: AlertPage, f: Filters, view: View = "row") -> dict[str, object]:
    return {
        "alerts": [shown(a) for a in page.alerts],
        "view": view,
        "filters": f,
        "next_query": f.query(cursor=page.next_cursor) if page.next_cursor else None,
    }


@router.get("/portal/alerts")
async def alerts_page(request: Request, who: Viewer, svc: Svc, f: Filtered) -> Response:
    page = await _page(svc, who, f)
    channels = await run_in_threadpool(svc.stream_feed.views.channels, who.tenant_id)
    context = {
        **_rows_context(page, f),
        "states": STATE_CHOICES,
        "channels": channels,
        "list_states": ",".join(f.states or []),
        "refresh_url": "/portal/alerts/rows?" + f.query(),
    }
    return render(request, "alerts.html", context)


@router.get("/portal/alerts/rows")
async def alert_rows(
    request: Request, who: Viewer, svc: Svc, f: Filtered, view: View = "row"
) -> Response:
    """The inbox's rows (or a stream's timeline entries) alone: pages catch up with them
    after a reconnect."""
    page = await _page(svc, who, f)
    return render(request, "fragments/alert_rows.html", _rows_context(page, f, view))


@router.get("/portal/alerts/{alert_id}/row")
async def alert_row(
    request: Request, alert_id: AlertId, who: Viewer, svc: Svc, view: View = "row"
) -> Response:
    alert = await run_in_threadpool(svc.alerts.get, who.tenant_id, alert_id)
    return render(request, TEMPLATES[view], {"shown": shown(alert)})


@router.get("/portal/alerts/{alert_id}/thumbnail")
async def alert_thumbnail(alert_id: AlertId, who: Viewer, svc: Svc) -> FileResponse:
    """The latest frame the alert's rule fired on, as a JPEG."""
    alert = await run_in_threadpool(svc.alerts.get, who.tenant_id, alert_id)
    if alert.thumbnail is None:
        raise NotFound(f"alert {alert_id} has no frame", code="thumbnail_not_found")
    path = svc.live_thumbnails.path(alert.stream_pk, alert.thumbnail)
    if not await run_in_threadpool(path.is_file):
        raise BastionError(
            f"the frame of alert {alert_id} was deleted after the retention period",
            code="thumbnail_expired",
            status=410,
        )
    return FileResponse(path, media_type="image/jpeg")


def _action(name: str) -> Callable[..., Awaitable[Response]]:
    async def act(
        request: Request, alert_id: AlertId, who: ModeratorPerson, svc: Svc, view: View = "row"
    ) -> Response:
        method = getattr(svc.alerts, name)
        alert = await run_in_threadpool(method, who.tenant_id, alert_id, who.actor)
        return render(request, TEMPLATES[view], {"shown": shown(alert)})

    act.__name__ = f"portal_{name}_alert"
    return act


for _name in ("acknowledge", "dismiss", "stop"):
    router.add_api_route(f"/portal/alerts/{{alert_id}}/{_name}", _action(_name), methods=["POST"])
