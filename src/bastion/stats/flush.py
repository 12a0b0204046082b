"""Writing the in-memory counts: every few seconds, on shutdown, and before a report.

Each write adds the drained counts to the stored ones in one transaction, with an
``INSERT ... ON CONFLICT DO UPDATE SET count = count + excluded.count`` (PostgreSQL's
and SQLite's own), so processes counting the same tenant and day never overwrite each
other. Rows are written in key order, so two processes' writes take row locks in the
same order. When a write fails the counts go back into the counter for the next one.
Whatever was counted in the last interval before a process crashed is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.stats.counter import CountKey, DailyCounter
from bastion.stats.tables import DailyCount

__all__ = ["FLUSH_INTERVAL_S", "CountFlusher", "add_counts"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S: Final = 5.0
_TABLE: Table = DailyCount.__table__  # type: ignore[assignment]


def _upsert(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (tenant, day, name, key) DO UPDATE`` adding the counts."""
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(_TABLE)
    elif dialect == "sqlite":
        stmt = sqlite.insert(_TABLE)
    else:
        raise NotImplementedError(f"daily counts are not written to {dialect} databases")
    return stmt.on_conflict_do_update(
        index_elements=[_TABLE.c.tenant_id, _TABLE.c.day, _TABLE.c.name, _TABLE.c.key],
        set_={"count": _TABLE.c["count"] + stmt.excluded["count"]},
    )


def add_counts(s: Session, counts: Mapping[CountKey, int]) -> None:
    """Add ``counts`` to the stored ones in ``s``'s transaction."""
    if not counts:
        return
    rows = [
        {"tenant_id": tenant, "day": day, "name": name, "key": key, "count": n}
        for (tenant, day, name, key), n in sorted(counts.items())
    ]
    s.execute(_upsert(s.get_bind().dialect.name), rows)


class CountFlusher:
    """Writes a :class:`DailyCounter`'s counts to the database."""

    def __init__(
        self,
        counter: DailyCounter,
        sessions: sessionmaker[Session],
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.counter = counter
        self.sessions = sessions
        self.interval_s = interval_s

    def flush(self) -> int:
        """Write what was counted since the last write (blocking); how many counts.
        On failure the counts go back to the counter and the error is raised."""
        counts = self.counter.drain()
        if not counts:
            return 0
        try:
            with self.sessions.begin() as s:
                add_counts(s, counts)
        except BaseException:
            self.counter.restore(counts)
            raise
        return len(counts)

    async def flush_now(self) -> None:
        """:meth:`flush` off the event loop; a failure is logged (the counts wait)."""
        try:
            await asyncio.to_thread(self.flush)
        except SQLAlchemyError:
            log.warning("daily counts not written (kept for the next try)", exc_info=True)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Write every ``interval_s`` until ``stop`` is set, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            await self.flush_now()
