"""The portal's push channel: a WebSocket at ``/portal/ws`` that sends a signed-in
person their tenant's changes as they happen.

Signed in with the session cookie (a browser sends it with the upgrade; SameSite=Strict
keeps other sites' pages from opening it with it) and checked against the page's origin.
A refused connection is accepted and closed at once with code 4401 (no session) or 4403
(another origin). Messages are the alert feed's JSON (``alert.created``,
``alert.updated``; see :mod:`bastion.api.alert_socket`), the stream feed's
(``stream.updated``; see :mod:`bastion.live.stream_feed`) and ``ping`` keep-alives; the
page turns each into a DOM event. Whatever the browser sends is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from bastion.api.alert_socket import drain
from bastion.api.services import Services
from bastion.live.alerts.feed import Subscription
from bastion.portal.people import COOKIE

router = APIRouter()
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


def _stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def same_origin(websocket: WebSocket) -> bool:
    """The upgrade came from a page of this site (browsers always send ``Origin``)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser: the cookie is the only credential it can have
    return urlsplit(origin).netloc == websocket.headers.get("host", "")


async def _forward(websocket: WebSocket, subs: list[Subscription], keepalive_s: float) -> None:
    """Send what any subscription has queued, as it comes; a ping when nothing did."""
    while not any(sub.closed.is_set() for sub in subs):
        waits = [asyncio.create_task(sub.ready.wait()) for sub in subs]
        try:
            await asyncio.wait(waits, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        messages: list[str] = []
        for sub in subs:
            if sub.messages or sub.ready.is_set():
                messages.extend(await sub.next(0))
        if not messages:
            messages = [json.dumps({"type": "ping", "time": _stamp()})]
        for message in messages:
            await websocket.send_text(message)


@router.websocket("/portal/ws")
async def portal_socket(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()
    if not same_origin(websocket):
        await websocket.close(CLOSE_FORBIDDEN, "another site's page may not open this")
        return
    token = websocket.cookies.get(COOKIE)
    found = await run_in_threadpool(svc.accounts.resolve_session, token) if token else None
    if found is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "sign in to the portal")
        return
    user, _ = found
    subs = [svc.feed.subscribe(user.tenant_id), svc.stream_feed.subscribe(user.tenant_id)]
    tasks: list[asyncio.Task[Any]] = []
    try:
        hello = {"type": "hello", "tenant_id": user.tenant_id, "server_time": _stamp()}
        await websocket.send_text(json.dumps(hello))
        keepalive = svc.feed.config.keepalive_s
        tasks = [
            asyncio.create_task(_forward(websocket, subs, keepalive)),
            asyncio.create_task(drain(websocket)),
            *(asyncio.create_task(sub.closed.wait()) for sub in subs),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        closed = next((sub for sub in subs if sub.closed.is_set()), None)
        if closed is not None:
            tasks[0].cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(closed.close_code, closed.close_reason), 2.0)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        svc.feed.unsubscribe(subs[0])
        svc.stream_feed.unsubscribe(subs[1])
