"""Hot swap: every moderating process follows the registry's aliases and serves the heads
they name, without a restart and without dropping a request.

Every ``refresh_s`` the :class:`HeadWatcher` lists the tenants' registered heads and the
versions their ``champion`` and ``challenger`` aliases name (one query). For an alias
that moved it fetches the new version, checks its sha256, loads it into a session of its
own and dry-runs it (:func:`~bastion.registry.heads.load_head`), and only then publishes
a new snapshot of the heads, swapping the reference: batches in flight finish on the old
sessions, the next ones use the new. A version that fails any check is refused and
logged once, and the head that served before keeps serving; an alias removed stops its
head. When the registry cannot be read the heads stay as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bastion.registry.errors import HeadRefused
from bastion.registry.heads import (
    CHALLENGER,
    CHAMPION,
    HeadPair,
    HeadRef,
    HeadSet,
    LoadedHead,
    load_head,
)
from bastion.registry.store import AliasedHead, ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Swap:
    """One alias the process followed: which head now serves it, and what it cost."""

    tenant: str
    category: str
    alias: str
    before: int | None
    after: int | None
    load_ms: float
    """Fetching, checking and loading the new version (0 when it was loaded already)."""
    at: datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    """A version an alias named that was not served, and why."""

    name: str
    version: int
    reason: str
    at: datetime


@dataclass
class WatcherStatus:
    """What the watcher did last."""

    synced_at: datetime | None = None
    error: str | None = None
    """Why the last listing failed (the heads stayed as they were), or None."""
    swaps: deque[Swap] = field(default_factory=lambda: deque(maxlen=100))
    refused: dict[tuple[str, int], Refusal] = field(default_factory=dict)


class HeadWatcher:
    """Keeps ``targets`` (the tenant head analyzers' :class:`HeadSet`) serving what the
    registry's aliases name. :meth:`sync` blocks; :meth:`run_forever` calls it in a
    thread every ``refresh_s``."""

    def __init__(
        self, registry: ModelRegistry, targets: Sequence[HeadSet], refresh_s: float
    ) -> None:
        self.registry = registry
        self.targets = list(targets)
        self.refresh_s = refresh_s
        self.status = WatcherStatus()
        self._serving: dict[tuple[str, str], HeadPair] = {}
        self._syncing = threading.Lock()
        self._published = False

    def sync(self) -> bool:
        """Read the aliases once and swap what moved; True when the heads changed. A sync
        still running (a slow registry) is not joined: this one does nothing."""
        if not self._syncing.acquire(blocking=False):
            return False
        try:
            return self._sync()
        finally:
            self._syncing.release()

    def _sync(self) -> bool:
        try:
            listing = self.registry.aliased_heads()
        except Exception as exc:  # the registry is down: keep serving what we have
            message = f"{type(exc).__name__}: {exc}"
            if message != self.status.error:
                log.warning("model registry unreadable, heads unchanged: %s", message)
            self.status.error = message
            return False
        if self.status.error is not None:
            log.info("model registry readable again")
        self.status.error = None
        loaded = {
            (h.ref.name, h.ref.version): h
            for pair in self._serving.values()
            for h in (pair.champion, pair.challenger)
            if h is not None
        }
        serving: dict[tuple[str, str], HeadPair] = {}
        for model in listing:
            old = self._serving.get((model.tenant, model.category), HeadPair())
            champion = self._follow(model, CHAMPION, old.champion, loaded)
            challenger = self._follow(model, CHALLENGER, old.challenger, loaded)
            if champion is not None or challenger is not None:
                serving[(model.tenant, model.category)] = HeadPair(champion, challenger)
        for key, pair in self._serving.items():
            if key not in serving:
                for alias, head in ((CHAMPION, pair.champion), (CHALLENGER, pair.challenger)):
                    if head is not None:
                        self._swapped(head.ref.tenant, head.ref.category, alias, head, None, 0.0)
        changed = serving != self._serving or not self._published
        self._serving = serving
        if changed:
            self._published = True
            snapshot: dict[str, dict[str, HeadPair]] = {}
            for (tenant, category), pair in serving.items():
                snapshot.setdefault(tenant, {})[category] = pair
            for target in self.targets:
                target.publish(snapshot)
        self.status.synced_at = datetime.now(UTC)
        return changed

    def _follow(
        self,
        model: AliasedHead,
        alias: str,
        current: LoadedHead | None,
        loaded: dict[tuple[str, int], LoadedHead],
    ) -> LoadedHead | None:
        """The head to serve under ``alias``: the one serving if the alias still names it,
        else the version it names now once loaded and checked; the one serving while the
        new one is refused or cannot be fetched."""
        version = model.aliases.get(alias)
        if version is None:
            if current is not None:
                self._swapped(model.tenant, model.category, alias, current, None, 0.0)
            return None
        if current is not None and current.ref.version == version:
            return current
        key = (model.name, version)
        if key in self.status.refused:
            return current
        head = loaded.get(key)  # e.g. the challenger promoted: its session is ready
        started = time.perf_counter()
        if head is None:
            try:
                head = self._load(HeadRef(model.tenant, model.category, model.name, version))
            except HeadRefused as exc:
                self.status.refused[key] = Refusal(
                    model.name, version, exc.message, datetime.now(UTC)
                )
                log.error(
                    "refused %s version %s for %s: %s; %s",
                    model.name,
                    version,
                    alias,
                    exc.message,
                    f"version {current.ref.version} keeps serving" if current else "none serves",
                )
                return current
            except Exception as exc:  # fetching failed: try again next time
                log.warning(
                    "could not load %s version %s: %s", model.name, version, exc, exc_info=True
                )
                return current
        self._swapped(
            model.tenant,
            model.category,
            alias,
            current,
            head,
            (time.perf_counter() - started) * 1000,
        )
        return head

    def _load(self, ref: HeadRef) -> LoadedHead:
        version, data = self.registry.fetch(ref.tenant, ref.category, ref.version)
        if version.tenant != ref.tenant or version.category != ref.category:
            raise HeadRefused(
                f"{ref.name} version {ref.version} is tagged for another tenant or category"
            )
        return load_head(data, ref, sha256=version.sha256, threshold=version.threshold)

    def _swapped(
        self,
        tenant: str,
        category: str,
        alias: str,
        before: LoadedHead | None,
        after: LoadedHead | None,
        load_ms: float,
    ) -> None:
        swap = Swap(
            tenant,
            category,
            alias,
            before.ref.version if before is not None else None,
            after.ref.version if after is not None else None,
            round(load_ms, 2),
            datetime.now(UTC),
        )
        self.status.swaps.append(swap)
        log.info(
            "tenant %s %s %s: version %s -> %s (%.1f ms)",
            tenant,
            category,
            alias,
            swap.before,
            swap.after,
            load_ms,
        )

    def close(self) -> None:
        """Stop serving heads (the process is shutting down)."""
        for target in self.targets:
            target.publish({})
        self._serving = {}
        self._published = False

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Follow the aliases every ``refresh_s`` (in a thread) until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.refresh_s)
                return
            try:
                await asyncio.to_thread(self.sync)
            except Exception:
                log.exception("following the registry's aliases failed")
