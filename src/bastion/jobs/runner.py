"""A worker process without the HTTP API (`bastion worker`): job workers, the webhook
dispatcher and, on RabbitMQ, the outbox relay, until asked to stop.

Any number of these may run on any number of machines against one database and queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bastion.api.inputs import fetch_policy
from bastion.config import Settings
from bastion.dedup.service import Dedup
from bastion.delivery.dispatcher import Dispatcher
from bastion.jobs.backend import make_queue
from bastion.jobs.retention import MediaRetention
from bastion.jobs.service import JobService
from bastion.jobs.worker import Worker
from bastion.live.runtime import build_live
from bastion.pipeline.engine import Engine
from bastion.pipeline.policies import PolicyBook
from bastion.rules import RuleBook
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """What one worker process runs."""

    dispatch: bool = True
    """Also deliver webhooks (any number of dispatchers may run)."""


async def run_worker_process(
    settings: Settings,
    stop: asyncio.Event,
    *,
    options: WorkerOptions | None = None,
    engine: Engine | None = None,
    on_ready: Callable[[Worker], None] | None = None,
) -> None:
    """Run until ``stop`` is set; jobs in hand are given back to the queue on the way out."""
    options = options or WorkerOptions()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_engine(settings.resolved_database_url)
    await asyncio.to_thread(migrate, db)
    sessions = session_factory(db)
    eng = engine or Engine(settings)
    if engine is None:
        errors = await asyncio.to_thread(eng.load_all)
        for name, error in errors.items():
            log.error("analyzer %s did not load: %s", name, error)
    queue = make_queue(settings.jobs, sessions)
    await queue.start()
    jobs = JobService.from_settings(settings, sessions, queue)
    policies = PolicyBook(Repo(sessions), settings.policies_dir)
    dedup = Dedup(eng, sessions, settings.dedup)
    await asyncio.to_thread(dedup.start)
    worker = Worker(eng, jobs, policies, settings.jobs, dedup=dedup)
    dispatcher = Dispatcher(sessions, settings.delivery, url_policy=fetch_policy(settings))
    if options.dispatch:
        worker.on_outcome = dispatcher.wake
    retention = MediaRetention(jobs, settings.jobs)
    live = build_live(settings, sessions, eng, policies, RuleBook(sessions), fetch_policy(settings))
    tasks = [
        asyncio.create_task(worker.run_forever(stop), name="worker"),
        asyncio.create_task(retention.run_forever(stop), name="retention"),
        asyncio.create_task(dedup.run_forever(stop), name="dedup-purge"),
    ]
    if settings.live.run_sessions:
        tasks.append(asyncio.create_task(live.supervisor.run_forever(stop), name="stream-sessions"))
    if options.dispatch:
        tasks.append(asyncio.create_task(dispatcher.run_forever(stop), name="dispatcher"))
    if on_ready is not None:
        on_ready(worker)
    log.info(
        "worker running: queue %s, %d jobs at once%s",
        settings.jobs.queue,
        settings.jobs.concurrency,
        ", delivering webhooks" if options.dispatch else "",
    )
    try:
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await dispatcher.aclose()
        await queue.close()
        if engine is None:
            await eng.close()
        db.dispose()
