"""The FastAPI application: wiring, lifespan (database, models) and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.routing import NoMatchFound

from bastion import __version__
from bastion.api import admin, alerts, errors, jobs, moderate, openapi, streams, system
from bastion.api import rules as rules_api
from bastion.api.inputs import fetch_policy, single_valued_query
from bastion.api.limits import Admission, BodyGuardMiddleware
from bastion.api.services import Services
from bastion.bootstrap import Bootstrap, bootstrap
from bastion.config import Settings
from bastion.dedup.service import Dedup
from bastion.delivery.dispatcher import Dispatcher
from bastion.jobs.backend import make_queue
from bastion.jobs.retention import MediaRetention
from bastion.jobs.service import JobService
from bastion.jobs.worker import Worker
from bastion.live.alerts.feed import AlertFeed
from bastion.live.runtime import build_live, register_configured
from bastion.pipeline.engine import Engine
from bastion.pipeline.policies import PolicyBook
from bastion.rules.book import RuleBook
from bastion.runtime.metrics import Metrics
from bastion.store.db import session_factory

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    on_bootstrap: Callable[[Bootstrap], None] | None = None,
) -> FastAPI:
    """Build the app. ``engine`` lets tests and benchmarks share loaded models."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        boot = await run_in_threadpool(bootstrap, settings)
        if on_bootstrap is not None:
            on_bootstrap(boot)
        eng = engine or Engine(settings, Metrics())
        if settings.preload:
            await run_in_threadpool(eng.load_all)
        sessions = session_factory(boot.db)
        queue = make_queue(settings.jobs, sessions)
        await queue.start()
        job_service = JobService.from_settings(settings, sessions, queue)
        policies = PolicyBook(boot.repo, settings.policies_dir)
        dedup = Dedup(eng, sessions, settings.dedup)
        await run_in_threadpool(dedup.start)
        rules = RuleBook(sessions)
        live = build_live(settings, sessions, eng, policies, rules, fetch_policy(settings))
        await run_in_threadpool(register_configured, live, settings)
        thumbs = live.thumbnails
        feed = AlertFeed(sessions)
        app.state.services = Services(
            settings=settings,
            metrics=eng.metrics,
            engine=eng,
            db=boot.db,
            repo=boot.repo,
            policies=policies,
            inflight=asyncio.Semaphore(settings.max_inflight),
            admission=Admission.from_settings(settings),
            db_sessions=sessions,
            jobs=job_service,
            dedup=dedup,
            rules=rules,
            streams=live.streams,
            alerts=live.alerts,
            live_thumbnails=thumbs,
            feed=feed,
            pushed_frames=live.pushed,
        )
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        background.append(asyncio.create_task(dedup.run_forever(stop), name="dedup-purge"))
        background.append(asyncio.create_task(feed.run_forever(stop), name="alert-feed"))
        if settings.live.run_sessions:
            sessions_task = live.supervisor.run_forever(stop)
            background.append(asyncio.create_task(sessions_task, name="stream-sessions"))
        dispatcher = Dispatcher(sessions, settings.delivery, url_policy=fetch_policy(settings))
        if settings.jobs.run_worker:
            worker = Worker(eng, job_service, policies, settings.jobs, dedup=dedup)
            worker.on_outcome = dispatcher.wake
            background.append(asyncio.create_task(worker.run_forever(stop), name="worker"))
            background.append(asyncio.create_task(dispatcher.run_forever(stop), name="dispatcher"))
            retention = MediaRetention(job_service, settings.jobs)
            background.append(asyncio.create_task(retention.run_forever(stop), name="retention"))
            purge = thumbs.run_forever(stop, settings.jobs.media_sweep_s)
            background.append(asyncio.create_task(purge, name="live-thumbnails"))
        # what start-up built (models, tables, routes) lives as long as the process: out of
        # the collector's reach, a full collection no longer walks it (100-400 ms pauses of
        # the event loop were measured with the models loaded)
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            await dispatcher.aclose()
            await queue.close()
            if engine is None:
                await eng.close()
            boot.db.dispose()

    app = FastAPI(
        title="Bastion",
        version=__version__,
        description="Self-hosted content moderation. "
        "Authenticate with `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        dependencies=[Depends(single_valued_query)],
    )
    errors.install(app)
    openapi.install(app)
    app.add_middleware(
        BodyGuardMiddleware, max_bytes=settings.max_request_bytes, intake=settings.intake
    )
    app.include_router(system.router)
    app.include_router(moderate.router)
    app.include_router(admin.router)
    app.include_router(jobs.router)
    app.include_router(rules_api.router)
    app.include_router(alerts.router)
    app.include_router(streams.router)

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
