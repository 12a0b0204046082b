"""One writer of stream status per process: the status and counters of every session it
runs go back to their streams' rows in one transaction a tick.

A session keeps its status in memory; the writer asks every session it knows for its
report (:class:`~bastion.live.streams.StreamReport`) each ``every_s`` and writes the
rows whose report changed since it last wrote them, all in one transaction. However
many streams a process holds, the database then sees one status write a second and the
thread pool one call, not one per stream. A status change (or a new alert) wakes the
writer early, after a short pause that gathers other sessions' changes into the same
write (and never sooner than ``MIN_GAP_S`` after the last one).

A failed write (e.g. SQLite's ``database is locked`` while another process writes) is
logged and the same rows are written at the next tick: a session's reporting never ends
on an error. A row that is no longer its session's (stopped, deleted, taken over) ends
that session, as its own writes did before. A session that ends hands in its final
report (:meth:`StatusWriter.finish`), which is written at once; should that fail it is
retried at the following ticks, and once more when the writer stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from bastion.live.streams import StreamReport, StreamService

log = logging.getLogger(__name__)

REPORT_S = 1.0
"""How often the rows of running sessions are written (when they changed)."""
GATHER_S = 0.05
"""How long a wake-up waits for other sessions' changes before writing."""
MIN_GAP_S = 0.25
"""Writes woken early are at least this far apart (bursts of changes share one)."""

ReportOf = Callable[[], StreamReport]
"""A session's report now (called on the event loop's thread; must not block)."""
OnLost = Callable[[], Coroutine[Any, Any, None]]
"""Ends a session whose row is no longer its own."""


@dataclass
class _Entry:
    owner: str | None
    report: ReportOf | None
    on_lost: OnLost | None
    written: StreamReport | None = None
    final: StreamReport | None = None
    lost: bool = False


@dataclass
class WriterStats:
    """What the writer did since it started."""

    flushes: int = 0
    """Transactions written (one per tick with changes)."""
    rows: int = 0
    """Rows written in them."""
    failures: int = 0
    """Writes that failed (their rows were written later)."""


@dataclass
class StatusWriter:
    """Writes the status of a process's stream sessions, batched; see the module
    documentation. Used from one event loop."""

    streams: StreamService
    executor: Executor | None = None
    """Where the writes run (None: the event loop's default thread pool)."""
    every_s: float = REPORT_S
    gather_s: float = GATHER_S
    min_gap_s: float = MIN_GAP_S
    stats: WriterStats = field(default_factory=WriterStats)
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _failing: int = 0
    _last_flush: float = float("-inf")
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    # ---- sessions -------------------------------------------------------------
    def add(self, pk: str, owner: str | None, report: ReportOf, on_lost: OnLost) -> None:
        """Write the reports of the session of stream ``pk`` from now on."""
        self._entries[pk] = _Entry(owner, report, on_lost)
        self._wake.set()

    def changed(self) -> None:
        """Something a report shows changed and should not wait for the tick."""
        self._wake.set()

    async def finish(self, pk: str, owner: str | None, report: StreamReport) -> bool:
        """The session of ``pk`` ended: write its final ``report`` now. False when that
        write failed (it is retried at the next ticks and when the writer stops)."""
        entry = self._entries.get(pk)
        if entry is None:
            entry = self._entries[pk] = _Entry(owner, None, None)
        entry.final, entry.report, entry.on_lost = report, None, None
        await self.flush()
        return pk not in self._entries or self._entries[pk].final is not report

    @property
    def pending(self) -> int:
        """Sessions whose rows the writer still writes (running, or final reports not
        yet written)."""
        return len(self._entries)

    # ---- writing --------------------------------------------------------------
    async def flush(self) -> bool:
        """Write every changed report now, in one transaction; False when it failed
        (the same rows are written at the next flush)."""
        async with self._lock:
            batch: list[tuple[str, str | None, StreamReport]] = []
            for pk, entry in self._entries.items():
                report = entry.final if entry.final is not None else self._read(pk, entry)
                if report is not None and report != entry.written:
                    batch.append((pk, entry.owner, report))
            if not batch:
                return True
            loop = asyncio.get_running_loop()
            self._last_flush = loop.time()
            try:
                lost = await loop.run_in_executor(self.executor, self.streams.report_many, batch)
            except Exception:
                self.stats.failures += 1
                self._failing += 1
                if self._failing == 1:
                    log.warning(
                        "status of %d streams not written; retrying", len(batch), exc_info=True
                    )
                else:
                    log.warning("status of %d streams still not written", len(batch))
                return False
            if self._failing:
                log.info("status of streams written again after %d failures", self._failing)
                self._failing = 0
            self.stats.flushes += 1
            self.stats.rows += len(batch)
            for pk, _, report in batch:
                written = self._entries.get(pk)
                if written is None:
                    continue
                written.written = report
                if written.final is report:
                    del self._entries[pk]
                elif pk in lost and not written.lost and written.on_lost is not None:
                    written.lost = True
                    self._let_go(pk, written.on_lost)
            return True

    def _read(self, pk: str, entry: _Entry) -> StreamReport | None:
        if entry.report is None:
            return None
        try:
            return entry.report()
        except Exception:  # a session's bug must not stop the others' reports
            log.exception("status of stream %s could not be read", pk)
            return None

    def _let_go(self, pk: str, on_lost: OnLost) -> None:
        log.info("stream %s is no longer ours; closing", pk)
        task = asyncio.create_task(on_lost(), name=f"release {pk}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Write every ``every_s`` (sooner when woken) until ``stop`` is set, then once
        more for what is still unwritten."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                waking = asyncio.create_task(self._wake.wait())
                try:
                    await asyncio.wait(
                        (waking, stopping),
                        timeout=self.every_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waking.cancel()
                if stop.is_set():
                    break
                if self._wake.is_set():
                    since = asyncio.get_running_loop().time() - self._last_flush
                    await asyncio.sleep(max(self.gather_s, self.min_gap_s - since))
                self._wake.clear()
                if not await self.flush():  # wait a whole tick before trying again
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stopping), self.every_s)
        finally:
            stopping.cancel()
            if self._entries and not await self.flush():
                log.error("status of %d streams could not be written", len(self._entries))
