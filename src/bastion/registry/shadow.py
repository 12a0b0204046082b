"""Shadow scoring of challengers: how often a tenant's ``challenger`` head disagrees with
its ``champion`` on live traffic, counted both ways.

A challenger is scored on the same embeddings as the champion and acts on nothing; a
disagreement is an item one head flags (probability at or above its threshold) and the
other does not. The counts are kept per tenant, category and pair of versions (so a new
challenger starts from zero). A process counts in memory (:class:`ShadowCounts`: one
dictionary update under a lock per batch) and writes what it counted since its last
write to the database every few seconds and at shutdown
(:mod:`bastion.registry.shadow_store`), where every process's counts add up and outlive
restarts. Each process also exports its own counts since it started to Prometheus as
``bastion_head_shadow_scored_total`` and ``bastion_head_shadow_disagreements_total``
(``direction``: ``challenger_only`` or ``champion_only``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True, order=True)
class ShadowKey:
    """A tenant's category and the two versions compared (``v<n>``; ``none`` when the
    tenant has no champion: the category is then not flagged by a head)."""

    tenant: str
    category: str
    champion: str
    challenger: str


@dataclass(frozen=True, slots=True)
class ShadowTally:
    """Items both heads were asked about, and the disagreements each way."""

    scored: int = 0
    challenger_only: int = 0
    """The challenger flags the item, the champion does not."""
    champion_only: int = 0
    """The champion flags the item, the challenger does not."""

    @property
    def disagreements(self) -> int:
        return self.challenger_only + self.champion_only

    def plus(self, other: ShadowTally) -> ShadowTally:
        """Both tallies added up."""
        return ShadowTally(
            self.scored + other.scored,
            self.challenger_only + other.challenger_only,
            self.champion_only + other.champion_only,
        )


def add_up(into: dict[ShadowKey, ShadowTally], more: Mapping[ShadowKey, ShadowTally]) -> None:
    """Add ``more`` to the tallies of ``into``, key by key."""
    for key, tally in more.items():
        found = into.get(key)
        into[key] = tally if found is None else found.plus(tally)


class ShadowCounts:
    """Disagreement counts of one process (thread-safe: model threads add to them).

    Two sets of tallies are kept: everything counted since the process started
    (:meth:`snapshot`, the Prometheus counters: they never go down), and what was counted
    since the last write to the database (:meth:`take`, :meth:`restore`, :meth:`pending`).
    """

    def __init__(self) -> None:
        self._counts: dict[ShadowKey, ShadowTally] = {}
        self._pending: dict[ShadowKey, ShadowTally] = {}
        self._lock = threading.Lock()

    def add(self, key: ShadowKey, scored: int, challenger_only: int, champion_only: int) -> None:
        """Count ``scored`` items of ``key`` and their disagreements each way."""
        more = ShadowTally(scored, challenger_only, champion_only)
        with self._lock:
            add_up(self._counts, {key: more})
            add_up(self._pending, {key: more})

    def snapshot(self) -> dict[ShadowKey, ShadowTally]:
        """Everything this process counted since it started."""
        with self._lock:
            return dict(self._counts)

    def for_tenant(self, tenant: str) -> dict[ShadowKey, ShadowTally]:
        """:meth:`snapshot`, ``tenant``'s keys only."""
        return {k: v for k, v in self.snapshot().items() if k.tenant == tenant}

    def take(self) -> dict[ShadowKey, ShadowTally]:
        """What was counted since the last take; the pending tallies start from zero
        (swapped under the lock: a count added meanwhile goes with the next take)."""
        with self._lock:
            taken, self._pending = self._pending, {}
        return {k: v for k, v in taken.items() if v != ShadowTally()}

    def restore(self, taken: Mapping[ShadowKey, ShadowTally]) -> None:
        """Put back tallies :meth:`take` gave that could not be written (they go with the
        next take, added to what was counted meanwhile)."""
        with self._lock:
            add_up(self._pending, taken)

    def pending(self, tenant: str | None = None) -> dict[ShadowKey, ShadowTally]:
        """What waits to be written (of ``tenant`` only, when given)."""
        with self._lock:
            found = dict(self._pending)
        return {k: v for k, v in found.items() if tenant is None or k.tenant == tenant}


class ShadowCollector(Collector):
    """The :class:`ShadowCounts` of a process's tenant head analyzers as Prometheus
    counters (summed over the analyzers), read at every scrape.

    The counters are this process's since it started, as Prometheus counters are: a
    scrape of each process shows its own, and ``sum`` over the processes adds them up.
    The totals over every process and restart are in the database
    (:class:`bastion.registry.shadow_store.ShadowStore`)."""

    def __init__(self, counts: Sequence[ShadowCounts]) -> None:
        self._counts = list(counts)

    def _totals(self) -> dict[ShadowKey, ShadowTally]:
        totals: dict[ShadowKey, ShadowTally] = {}
        for counts in self._counts:
            add_up(totals, counts.snapshot())
        return totals

    def collect(self) -> Iterator[Metric]:
        labels = ["tenant", "category", "champion", "challenger"]
        scored = CounterMetricFamily(
            "bastion_head_shadow_scored",
            "Items a challenger head was scored on in shadow beside the champion",
            labels=labels,
        )
        disagreements = CounterMetricFamily(
            "bastion_head_shadow_disagreements",
            "Items on which the challenger and the champion head disagree",
            labels=[*labels, "direction"],
        )
        for key, tally in sorted(self._totals().items()):
            values = [key.tenant, key.category, key.champion, key.challenger]
            scored.add_metric(values, tally.scored)
            disagreements.add_metric([*values, "challenger_only"], tally.challenger_only)
            disagreements.add_metric([*values, "champion_only"], tally.champion_only)
        yield scored
        yield disagreements
