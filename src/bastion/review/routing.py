"""Which queue, at which priority, an item goes to: from the labels or the rule that
sent it to review, by the routes of :class:`~bastion.review.config.ReviewConfig`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from bastion.policy import taxonomy
from bastion.review.config import ReviewConfig


class Route(NamedTuple):
    queue: str
    priority: int


def with_parents(labels: Iterable[str]) -> list[str]:
    """The labels and their L1 parents (names outside the taxonomy kept as they are),
    sorted, each once."""
    out: set[str] = set()
    for name in labels:
        out.update(taxonomy.lineage(name) if name in taxonomy.CATEGORIES else (name,))
    return sorted(out)


def route(config: ReviewConfig, categories: Iterable[str], rule: str | None = None) -> Route:
    """The matching route of highest priority (the first listed among equals), or the
    default queue. ``categories`` match a route naming them or their L1 parent."""
    names = set(with_parents(categories))
    best: Route | None = None
    for q in config.queues:
        matches = names.intersection(q.categories) or (rule is not None and rule in q.rules)
        if matches and (best is None or q.priority > best.priority):
            best = Route(q.name, q.priority)
    return best or Route(config.default_queue, config.default_priority)
