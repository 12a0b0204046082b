"""Counts kept in memory until they are written: per tenant, UTC day, name and key.

Moderating an image must not cost a database write, so what the database does not
store otherwise (images of the synchronous API and live frames, with the decision the
policy took) is counted here, one dictionary increment under a lock per item, and
written every few seconds by :mod:`bastion.stats.flush` (added to what is stored, so
any number of processes may count the same tenant and day). Counts not yet written
when a process dies are lost: these are statistics, not accepted work.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Final

__all__ = ["MODERATED", "SOURCES", "CountKey", "DailyCounter", "moderated_name"]

SOURCES: Final = ("api", "job", "live")
"""Where items come from: the synchronous API, jobs and live frames (pushed or read)."""
MODERATED: Final = "moderated."
"""Prefix of the counts of items moderated by a source: ``moderated.<source>``, keyed by
the policy's decision."""

CountKey = tuple[str, date, str, str]
"""(tenant id, UTC day, name, key)."""


def moderated_name(source: str) -> str:
    """The count name of the items ``source`` moderated."""
    return MODERATED + source


def _utc_today() -> date:
    return datetime.now(UTC).date()


class DailyCounter:
    """Per-tenant daily counts in memory; safe to use from any thread."""

    def __init__(self, today: Callable[[], date] = _utc_today) -> None:
        self._today = today
        self._lock = threading.Lock()
        self._counts: Counter[CountKey] = Counter()

    def add(self, tenant: str, name: str, key: str, n: int = 1, *, day: date | None = None) -> None:
        """Count ``n`` more of ``name``/``key`` for ``tenant`` on ``day`` (default today,
        UTC)."""
        at = day if day is not None else self._today()
        with self._lock:
            self._counts[(tenant, at, name, key)] += n

    def moderated(self, tenant: str, source: str, decision: str) -> None:
        """One item of ``tenant`` moderated by ``source`` with the policy's ``decision``."""
        self.add(tenant, moderated_name(source), decision)

    def drain(self) -> dict[CountKey, int]:
        """Everything counted since the last drain; the counter starts from zero."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return {k: v for k, v in counts.items() if v}

    def restore(self, counts: Mapping[CountKey, int]) -> None:
        """Put back drained counts that could not be written (they go with the next write)."""
        with self._lock:
            self._counts.update(counts)

    def pending(self) -> int:
        """How many (tenant, day, name, key) counts wait to be written."""
        with self._lock:
            return len(self._counts)
