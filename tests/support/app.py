"""The app under test, started the two ways tests need it.

:func:`running` builds ``create_app(settings, engine=...)`` (the session's engine with
its loaded models, so a new app is cheap), runs its lifespan and hands back an
:class:`Api`: an ``httpx.AsyncClient`` talking to it in process over
``httpx.ASGITransport``, the app, its services and settings, and a few API calls tests
repeat (a tenant of their own, a read-only key, waiting for a job). In process the app
shares the test's event loop; a new app on the same settings is a restart.

:func:`serving` runs the same app on a real uvicorn server on a loopback socket, for
what only a real server has: WebSockets, slow or vanishing clients on raw sockets,
real concurrency. Its :class:`ServedApi` adds the base URLs and the port.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from bastion.api.app import create_app
from bastion.api.services import Services
from bastion.bootstrap import Bootstrap
from bastion.config import Settings
from bastion.pipeline.engine import Engine
from tests.support.auth import AUTH, bearer
from tests.support.loopback import HOST

BASE_URL = "http://bastion"


@dataclass
class Tenant:
    """A tenant a test made: its id, its admin key and the headers presenting it."""

    id: str
    key: str
    headers: dict[str, str]


@dataclass
class Api:
    """A started app and a client talking to it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings

    @property
    def services(self) -> Services:
        svc: Services = self.app.state.services
        return svc

    async def new_tenant(self) -> Tenant:
        """A new tenant, so tests do not see each other's documents."""
        tid = f"t{uuid.uuid4().hex[:10]}"
        r = await self.client.post("/v1/tenants", json={"id": tid, "name": tid}, headers=AUTH)
        assert r.status_code == 201, r.text
        key: str = r.json()["admin_key"]["key"]
        return Tenant(tid, key, bearer(key))

    async def tenant(self) -> dict[str, str]:
        """Admin headers of a new tenant."""
        return (await self.new_tenant()).headers

    async def reader(self, admin: dict[str, str]) -> dict[str, str]:
        """Headers of a read-only key of the tenant ``admin`` belongs to."""
        r = await self.client.post("/v1/keys", json={"scopes": ["read"]}, headers=admin)
        assert r.status_code == 201, r.text
        return bearer(r.json()["key"])


@dataclass
class ServedApi(Api):
    """:class:`Api` on a real server: ``client`` talks to it over loopback."""

    port: int

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"


@asynccontextmanager
async def running(
    settings: Settings,
    engine: Engine | None = None,
    *,
    on_bootstrap: Callable[[Bootstrap], None] | None = None,
    raise_app_exceptions: bool = True,
    base_url: str = BASE_URL,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> AsyncIterator[Api]:
    """The app on ``settings`` with its lifespan started, and an in-process client.

    ``raise_app_exceptions=False`` answers a crash with a 500, as a real server does,
    instead of raising it into the test; ``headers`` go with every request.
    """
    app = create_app(settings, engine=engine, on_bootstrap=on_bootstrap)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers, timeout=timeout
        ) as client:
            yield Api(app, client, settings)


@asynccontextmanager
async def serving(
    settings: Settings,
    engine: Engine | None = None,
    *,
    on_bootstrap: Callable[[Bootstrap], None] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    start_timeout: float = 120,
    app: FastAPI | None = None,
    **uvicorn_options: Any,
) -> AsyncIterator[ServedApi]:
    """The app on ``settings`` on a real uvicorn server on a free loopback port.

    The server gets the socket already bound, so no other process can take the port
    between choosing and binding it. ``uvicorn_options`` go to ``uvicorn.Config``
    (e.g. ``log_config=None, log_level="info"`` to see its log records in ``caplog``).
    ``app`` serves an app the test built itself (``create_app`` with other arguments).
    """
    if app is None:
        app = create_app(settings, engine=engine, on_bootstrap=on_bootstrap)
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "ws": "auto"}
    options.update(uvicorn_options)
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            assert not task.done(), f"the server did not start: {task.exception()!r}"
            assert time.monotonic() < deadline, f"the server did not start in {start_timeout} s"
            await asyncio.sleep(0.02)
    except BaseException:
        server.should_exit = True
        sock.close()
        raise
    try:
        base = f"http://{HOST}:{port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout) as client:
            yield ServedApi(app, client, settings, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()
