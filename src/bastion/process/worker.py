"""A process without the HTTP API (`bastion worker`): job workers, stream sessions, the
webhook dispatcher and, on RabbitMQ, the outbox relay, until asked to stop.

Any number of these may run on any number of machines against one database and queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bastion.config import Settings
from bastion.jobs.worker import Worker
from bastion.pipeline.engine import Engine
from bastion.process.components import Roles, build_components

log = logging.getLogger(__name__)


async def run_worker_process(
    settings: Settings,
    stop: asyncio.Event,
    *,
    dispatch: bool = True,
    engine: Engine | None = None,
    on_ready: Callable[[Worker], None] | None = None,
) -> None:
    """Run until ``stop`` is set (or a background loop fails); jobs in hand are given back
    to the queue on the way out. ``dispatch``: also deliver webhooks."""
    parts = await build_components(
        settings, Roles.worker(settings, dispatch=dispatch), engine=engine
    )
    tasks = parts.run(stop)
    if on_ready is not None and parts.worker is not None:
        on_ready(parts.worker)
    log.info(
        "worker running: queue %s, %d jobs at once%s",
        settings.jobs.queue,
        settings.jobs.concurrency,
        ", delivering webhooks" if dispatch else "",
    )
    try:
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await parts.aclose()
