"""Challengers' shadow counts in the database: written every few seconds by every process
that scores challengers, added up over processes and restarts, read per tenant.

Each write takes what this process's :class:`~bastion.registry.shadow.ShadowCounts`
counted since the last one and adds it to the ``head_shadow_counts`` rows in one
transaction, with an ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``
(PostgreSQL's and SQLite's own, as :mod:`bastion.stats.flush` writes the daily counts),
so processes counting the same pair of versions never overwrite each other. Rows are
written in key order, so two processes' writes take row locks in the same order. When a
write fails the counts go back to their :class:`ShadowCounts` for the next one. Whatever
was counted in the last interval before a process crashed is lost: these are
statistics, not accepted work.

A reading is the stored totals plus what this process counted and has not written yet,
so a count shows at once where it was made, and within the flush interval everywhere
else. Writing and reading take the same lock, so a write in between never counts this
process's pending tallies twice, or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.registry.shadow import ShadowCounts, ShadowKey, ShadowTally, add_up
from bastion.registry.tables import HeadShadowCount
from bastion.stats.flush import FLUSH_INTERVAL_S

__all__ = ["ShadowStore", "add_shadow_counts"]

log = logging.getLogger(__name__)

_TABLE: Table = HeadShadowCount.__table__  # type: ignore[assignment]
_KEY = ("tenant_id", "category", "champion", "challenger")
_ADDED = ("scored", "challenger_only", "champion_only")


def _upsert(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (tenant, category, champion, challenger) DO UPDATE``
    adding the counts."""
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(_TABLE)
    elif dialect == "sqlite":
        stmt = sqlite.insert(_TABLE)
    else:
        raise NotImplementedError(f"shadow counts are not written to {dialect} databases")
    added = {name: _TABLE.c[name] + stmt.excluded[name] for name in _ADDED}
    return stmt.on_conflict_do_update(
        index_elements=[_TABLE.c[name] for name in _KEY],
        set_={**added, "updated_at": stmt.excluded["updated_at"]},
    )


def add_shadow_counts(s: Session, counts: Mapping[ShadowKey, ShadowTally]) -> None:
    """Add ``counts`` to the stored ones in ``s``'s transaction."""
    if not counts:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "tenant_id": key.tenant,
            "category": key.category,
            "champion": key.champion,
            "challenger": key.challenger,
            "scored": t.scored,
            "challenger_only": t.challenger_only,
            "champion_only": t.champion_only,
            "first_seen": now,
            "updated_at": now,
        }
        for key, t in sorted(counts.items())
    ]
    s.execute(_upsert(s.get_bind().dialect.name), rows)


class ShadowStore:
    """The shadow counts of a process's tenant head analyzers (``counts``; none where
    the process runs no heads, which still reads the totals), written to and read from
    the database."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        counts: Sequence[ShadowCounts] = (),
        *,
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.sessions = sessions
        self.counts = list(counts)
        self.interval_s = interval_s
        self._lock = threading.Lock()

    @property
    def counting(self) -> bool:
        """Whether this process counts anything to write."""
        return bool(self.counts)

    # writing -------------------------------------------------------------------------
    def flush(self) -> int:
        """Write what was counted since the last write (blocking); how many pairs of
        versions. On failure the counts go back to where they were taken from and the
        error is raised."""
        with self._lock:
            taken = [(counts, counts.take()) for counts in self.counts]
            merged: dict[ShadowKey, ShadowTally] = {}
            for _, tallies in taken:
                add_up(merged, tallies)
            if not merged:
                return 0
            try:
                with self.sessions.begin() as s:
                    add_shadow_counts(s, merged)
            except BaseException:
                for counts, tallies in taken:
                    counts.restore(tallies)
                raise
            return len(merged)

    async def flush_now(self) -> None:
        """:meth:`flush` off the event loop; a failure is logged (the counts wait)."""
        if not self.counting:
            return
        try:
            await asyncio.to_thread(self.flush)
        except SQLAlchemyError:
            log.warning("shadow counts not written (kept for the next try)", exc_info=True)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Write every ``interval_s`` until ``stop`` is set, then once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            await self.flush_now()

    # reading -------------------------------------------------------------------------
    def totals(self, tenant: str) -> dict[ShadowKey, ShadowTally]:
        """``tenant``'s shadow counts over every process and restart (blocking): the
        stored ones plus this process's not yet written."""
        with self._lock:
            found: dict[ShadowKey, ShadowTally] = {}
            with self.sessions() as s:
                rows = s.execute(
                    select(
                        HeadShadowCount.category,
                        HeadShadowCount.champion,
                        HeadShadowCount.challenger,
                        HeadShadowCount.scored,
                        HeadShadowCount.challenger_only,
                        HeadShadowCount.champion_only,
                    ).where(HeadShadowCount.tenant_id == tenant)
                )
                for category, champion, challenger, scored, mine, theirs in rows:
                    key = ShadowKey(tenant, category, champion, challenger)
                    found[key] = ShadowTally(scored, mine, theirs)
            for counts in self.counts:
                add_up(found, counts.pending(tenant))
            return found
