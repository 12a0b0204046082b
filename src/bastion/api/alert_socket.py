"""The alert WebSocket (``/v1/alerts/ws``): a tenant's alert changes as they happen.

Authenticated with an API key with the ``read`` scope, sent as
``Authorization: Bearer <key>`` or, since browsers cannot set headers on WebSockets,
as ``?token=<key>``. A refused connection is accepted and closed at once with code
4401 (no or a bad key) or 4403 (the key lacks the scope) and a reason.

Messages are JSON text: first ``{"type": "hello", ...}``, then
``{"type": "alert.created" | "alert.updated", "alert": {...}}`` (the alert as
``GET /v1/alerts/{id}`` gives it) and ``{"type": "ping"}`` when nothing was sent for
``keepalive_s``. Whatever the client sends is ignored. A client that reconnects
catches up with ``GET /v1/alerts?since=<the last updated_at it saw>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import WebSocket
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from bastion.api.services import Services
from bastion.live.alerts.feed import Subscription

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


def _token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.query_params.get("token") or None


def _stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _send(websocket: WebSocket, sub: Subscription, keepalive_s: float) -> None:
    while not sub.closed.is_set():
        messages = await sub.next(keepalive_s)
        if sub.closed.is_set():
            return
        if not messages:
            messages = [json.dumps({"type": "ping", "time": _stamp()})]
        for message in messages:
            await websocket.send_text(message)


async def drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def serve_alert_feed(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()
    token = _token(websocket)
    who = await run_in_threadpool(svc.authenticate, token) if token else None
    if who is None:
        reason = "invalid or revoked API key" if token else "missing API key"
        await websocket.close(CLOSE_UNAUTHORIZED, reason)
        return
    if not who.has("read"):
        await websocket.close(CLOSE_FORBIDDEN, "this key lacks the 'read' scope")
        return
    feed = svc.feed
    sub = feed.subscribe(who.tenant_id)
    tasks: list[asyncio.Task[Any]] = []
    try:
        hello = {
            "type": "hello",
            "tenant_id": who.tenant_id,
            "server_time": _stamp(),
            "keepalive_s": feed.config.keepalive_s,
            "events": ["alert.created", "alert.updated"],
        }
        await websocket.send_text(json.dumps(hello))
        tasks = [
            asyncio.create_task(_send(websocket, sub, feed.config.keepalive_s)),
            asyncio.create_task(drain(websocket)),
            asyncio.create_task(sub.closed.wait()),  # dropped, even while a send hangs
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if sub.closed.is_set():
            tasks[0].cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(sub.close_code, sub.close_reason), 2.0)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        feed.unsubscribe(sub)
