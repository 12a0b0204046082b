"""The registry's part in a moderating process: the :class:`ModelRegistry` client, the
challengers' shadow counts in the database (:class:`ShadowStore`: every process reads
them), and, when the settings run tenant heads (an analyzer of type ``tenant_head``),
the watcher that keeps them following the aliases and the Prometheus export of this
process's shadow counts (written to the database by the ``shadow-counts`` loop of
:meth:`bastion.process.components.Components.run`).

Built by the composition root (:mod:`bastion.process.components`); a process without a
``tenant_head`` analyzer has the registry client only and never imports MLflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from bastion.analyzers.tenant_head import TenantHeadAnalyzer
from bastion.config import Settings
from bastion.pipeline.engine import Engine
from bastion.registry.shadow import ShadowCollector
from bastion.registry.shadow_store import ShadowStore
from bastion.registry.store import ModelRegistry
from bastion.registry.watcher import HeadWatcher

log = logging.getLogger(__name__)

START_SYNC_TIMEOUT_S = 60.0
"""Longest start-up waits for the first reading of the aliases; the watcher's loop
catches up after that."""


@dataclass
class Heads:
    """The model registry, the challengers' shadow counts and, where tenant heads run,
    their watcher."""

    registry: ModelRegistry
    watcher: HeadWatcher | None
    """None when no ``tenant_head`` analyzer is configured."""
    engine: Engine
    shadow: ShadowStore
    """The shadow counts in the database, and this process's (its analyzers') to write."""
    _collectors: list[Collector] = field(default_factory=list)

    async def start(self) -> None:
        """Read the aliases once before serving (so the first requests get the tenants'
        heads) and export the shadow counts."""
        if self.watcher is None:
            return
        collector = ShadowCollector(self.shadow.counts)
        try:
            self.engine.metrics.registry.register(collector)
            self._collectors.append(collector)
        except ValueError:  # a lent engine another app exports already
            pass
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.watcher.sync), START_SYNC_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "model registry not read within %.0f s; heads follow when it answers",
                START_SYNC_TIMEOUT_S,
            )
        else:
            log.info("tenant heads read from the registry in %.2f s", time.perf_counter() - started)

    async def run_forever(self, stop: asyncio.Event) -> None:
        if self.watcher is not None:
            await self.watcher.run_forever(stop)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        for collector in self._collectors:
            self.engine.metrics.registry.unregister(collector)
        self._collectors.clear()


def build_heads(settings: Settings, engine: Engine, sessions: sessionmaker[Session]) -> Heads:
    """The registry on ``settings.registry``, the shadow counts in the database of
    ``sessions``, and a watcher feeding the engine's tenant head analyzers (if any)."""
    registry = ModelRegistry(settings.registry, settings.data_dir, analyzers=engine.infos)
    analyzers = [a for a in engine.analyzers.values() if isinstance(a, TenantHeadAnalyzer)]
    targets = [a.heads for a in analyzers]
    watcher = HeadWatcher(registry, targets, settings.registry.refresh_s) if targets else None
    shadow = ShadowStore(sessions, [a.shadow for a in analyzers])
    return Heads(registry, watcher, engine, shadow)
