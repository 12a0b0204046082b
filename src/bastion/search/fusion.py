"""Reciprocal-rank fusion of several rankings of documents into one ranking of moments.

A *moment* is a stretch of one piece of media: documents of the same media
(``media_kind``, ``media_ref``) whose time ranges overlap (or lie within ``gap_s`` of
each other, transitively) make one moment spanning all of them; the documents of an
image, or any without a time range, make one moment per media.

Each ranking (the full-text hits, the semantic hits of the vector index, ...) gives a
moment the rank of its best document in it; the moment's score is
``sum(1 / (k + rank))`` over the rankings it appears in (Cormack et al., 2009; ``k =
60``). Scores of different rankings are never compared — only ranks — so BM25 and
cosine similarities need no calibration, and a moment found both ways comes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.policy.decide import SEVERITY
from bastion.search.query import Snippet
from bastion.search.text_index import TextHit

RRF_K = 60
"""The usual constant of reciprocal-rank fusion: damps the weight of the top ranks."""


@dataclass(frozen=True)
class Moment:
    """A stretch of one piece of media that matched, and why."""

    media_kind: str
    media_ref: str
    start_s: float | None
    end_s: float | None
    """The span of its documents (None for an image or a moment without times)."""
    score: float
    """The fused score: larger is better."""
    hits: tuple[TextHit, ...]
    """Its documents, the best-ranked first."""
    snippet: Snippet
    """The snippet of its best-ranked document."""
    labels: tuple[str, ...]
    """Every label of its documents, sorted."""
    decision: str | None
    """The most severe decision among its documents (block, review, allow)."""
    thumbnail: str | None = None
    """The API path of a JPEG of the moment: its best-ranked document's, else the first
    of its other documents (in rank order) that has one; None when none has."""


def _group(hits: Sequence[TextHit], gap_s: float) -> list[list[TextHit]]:
    by_media: dict[tuple[str, str], list[TextHit]] = {}
    for hit in hits:
        by_media.setdefault((hit.media_kind, hit.media_ref), []).append(hit)
    groups: list[list[TextHit]] = []
    for docs in by_media.values():
        untimed = [h for h in docs if h.start_s is None]
        if untimed:
            groups.append(untimed)
        timed = sorted(
            (h for h in docs if h.start_s is not None),
            key=lambda h: (h.start_s or 0.0, h.id),
        )
        current: list[TextHit] = []
        end = 0.0
        for hit in timed:
            start = hit.start_s or 0.0
            stop = hit.end_s if hit.end_s is not None else start
            if current and start <= end + gap_s:
                current.append(hit)
                end = max(end, stop)
            else:
                if current:
                    groups.append(current)
                current, end = [hit], stop
        if current:
            groups.append(current)
    return groups


def fuse(
    rankings: Sequence[Sequence[TextHit]],
    *,
    k: int = RRF_K,
    gap_s: float = 0.0,
    limit: int | None = None,
) -> list[Moment]:
    """Moments of the documents in ``rankings`` (each best first), best first."""
    unique: dict[int, TextHit] = {}
    for ranking in rankings:
        for hit in ranking:
            unique.setdefault(hit.id, hit)
    moment_of: dict[int, int] = {}
    groups = _group(list(unique.values()), gap_s)
    for n, group in enumerate(groups):
        for hit in group:
            moment_of[hit.id] = n
    scores = [0.0] * len(groups)
    best_rank: dict[int, float] = {}
    for ranking in rankings:
        seen: set[int] = set()
        for rank, hit in enumerate(ranking, start=1):
            n = moment_of[hit.id]
            best_rank[hit.id] = min(best_rank.get(hit.id, float("inf")), rank)
            if n not in seen:
                seen.add(n)
                scores[n] += 1.0 / (k + rank)
    moments: list[Moment] = []
    for n, group in enumerate(groups):
        ordered = sorted(group, key=lambda h: (best_rank[h.id], -h.score, h.id))
        starts = [h.start_s for h in group if h.start_s is not None]
        ends = [h.end_s if h.end_s is not None else h.start_s for h in group]
        decisions = [h.decision for h in group if h.decision in SEVERITY]
        moments.append(
            Moment(
                media_kind=ordered[0].media_kind,
                media_ref=ordered[0].media_ref,
                start_s=min(starts) if starts else None,
                end_s=max((e for e in ends if e is not None), default=None),
                score=scores[n],
                hits=tuple(ordered),
                snippet=ordered[0].snippet,
                labels=tuple(sorted({label for h in group for label in h.labels})),
                decision=max(decisions, key=lambda d: SEVERITY[d], default=None),
                thumbnail=next((h.thumbnail for h in ordered if h.thumbnail), None),
            )
        )
    moments.sort(key=lambda m: (-m.score, m.media_ref, m.start_s or 0.0))
    return moments if limit is None else moments[:limit]
