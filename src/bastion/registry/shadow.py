"""Shadow scoring of challengers: how often a tenant's ``challenger`` head disagrees with
its ``champion`` on live traffic, counted both ways.

A challenger is scored on the same embeddings as the champion and acts on nothing; a
disagreement is an item one head flags (probability at or above its threshold) and the
other does not. The counts are kept in memory per tenant, category and pair of versions
(so a new challenger starts from zero), and exported to Prometheus as
``bastion_head_shadow_scored_total`` and ``bastion_head_shadow_disagreements_total``
(``direction``: ``challenger_only`` or ``champion_only``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
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


class ShadowCounts:
    """Disagreement counts of one process (thread-safe: model threads add to them)."""

    def __init__(self) -> None:
        self._counts: dict[ShadowKey, ShadowTally] = {}
        self._lock = threading.Lock()

    def add(self, key: ShadowKey, scored: int, challenger_only: int, champion_only: int) -> None:
        with self._lock:
            t = self._counts.get(key, ShadowTally())
            self._counts[key] = ShadowTally(
                t.scored + scored,
                t.challenger_only + challenger_only,
                t.champion_only + champion_only,
            )

    def snapshot(self) -> dict[ShadowKey, ShadowTally]:
        with self._lock:
            return dict(self._counts)

    def for_tenant(self, tenant: str) -> dict[ShadowKey, ShadowTally]:
        return {k: v for k, v in self.snapshot().items() if k.tenant == tenant}


class ShadowCollector(Collector):
    """The :class:`ShadowCounts` of a process's tenant head analyzers as Prometheus
    counters (summed over the analyzers), read at every scrape."""

    def __init__(self, counts: Sequence[ShadowCounts]) -> None:
        self._counts = list(counts)

    def _totals(self) -> dict[ShadowKey, ShadowTally]:
        totals: dict[ShadowKey, ShadowTally] = {}
        for counts in self._counts:
            for key, t in counts.snapshot().items():
                s = totals.get(key, ShadowTally())
                totals[key] = ShadowTally(
                    s.scored + t.scored,
                    s.challenger_only + t.challenger_only,
                    s.champion_only + t.champion_only,
                )
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
