"""The FastAPI application: routers, middleware, and a lifespan that builds the process's
components (:mod:`bastion.process.components`) and serves them to the handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from starlette.routing import NoMatchFound

from bastion import __version__
from bastion.api import (
    admin,
    alerts,
    aws_keys,
    corrections,
    errors,
    jobs,
    models,
    moderate,
    openapi,
    reviews,
    samples,
    search,
    streams,
    system,
    training,
)
from bastion.api import rules as rules_api
from bastion.api import stats as stats_api
from bastion.api.inputs import single_valued_query
from bastion.api.limits import BodyGuardMiddleware
from bastion.api.services import Services
from bastion.aws.call import Handler
from bastion.aws.protocol import build_router, guard_error, operations
from bastion.bootstrap import Bootstrap
from bastion.config import Settings
from bastion.pipeline.engine import Engine
from bastion.portal import errors as portal_errors
from bastion.portal import router as portal_router
from bastion.process.components import Roles, build_components

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    on_bootstrap: Callable[[Bootstrap], None] | None = None,
    aws_operations: Mapping[str, Handler] | None = None,
) -> FastAPI:
    """Build the app. ``engine`` lets tests and benchmarks share loaded models;
    ``aws_operations`` replaces the Rekognition operations served on ``POST /``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts = await build_components(
            settings, Roles.server(settings), engine=engine, on_bootstrap=on_bootstrap
        )
        app.state.services = Services.from_components(parts)
        stop = asyncio.Event()
        parts.run(stop)
        # what start-up built (models, tables, routes) lives as long as the process: out of
        # the collector's reach, a full collection no longer walks it (100-400 ms pauses of
        # the event loop were measured with the models loaded)
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            await parts.aclose()

    app = FastAPI(
        title="Bastion",
        version=__version__,
        description="Self-hosted content moderation. "
        "Authenticate with `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        dependencies=[Depends(single_valued_query)],
    )
    errors.install(app, page_error=portal_errors.page_error)
    openapi.install(app)
    app.add_middleware(
        BodyGuardMiddleware,
        max_bytes=settings.max_request_bytes,
        intake=settings.intake,
        shape=guard_error if settings.aws.enabled else None,
    )
    if settings.aws.enabled:
        app.include_router(build_router(operations() if aws_operations is None else aws_operations))
    app.include_router(aws_keys.router)
    app.include_router(system.router)
    app.include_router(moderate.router)
    app.include_router(admin.router)
    app.include_router(jobs.router)
    app.include_router(rules_api.router)
    app.include_router(alerts.router)
    app.include_router(streams.router)
    app.include_router(reviews.router)
    app.include_router(corrections.router)
    app.include_router(samples.router)
    app.include_router(search.router)
    app.include_router(training.router)
    app.include_router(models.router)
    app.include_router(stats_api.router)
    portal_router.install(app)

    @app.middleware("http")
    async def _metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        svc = getattr(request.app.state, "services", None)
        if svc is not None:
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            svc.metrics.requests.labels(request.method, path, str(response.status_code)).inc()
            svc.metrics.request_latency.labels(path).observe(time.perf_counter() - started)
        return response

    # FastAPI builds the routes of an included router on the first request that reaches
    # it, a few hundred ms on the event loop: build them all now instead.
    with contextlib.suppress(NoMatchFound):
        app.url_path_for("\0")
    return app
