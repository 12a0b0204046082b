"""What the review pages show of an item: what the models said, put in one shape for
every source (a job's or a synchronous call's moderation result, a live alert), whether
its media is hidden behind a blur, and who took each decision.

Nothing here escapes anything: every value is plain text that the templates print with
autoescaping on (an OCR line or a QR payload that reads ``<script>`` is shown as text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bastion.api.reviews import content_type, media_path
from bastion.api.services import Services
from bastion.policy import taxonomy
from bastion.review.tables import CLAIMED, DECIDED, ReviewDecision, ReviewItem
from bastion.store.types import to_utc

SENSITIVE_L1: frozenset[str] = frozenset({"Explicit Nudity", "Violence", "Visually Disturbing"})
"""Taxonomy categories whose media reviewers see blurred until they ask (explicit nudity,
gore and shocking content); an L2 label counts through its L1."""
assert set(taxonomy.L1) >= SENSITIVE_L1, "a sensitive category is not in the taxonomy"

MediaKind = Literal["image", "video", "expired"]
MAX_SHOWN = 200
"""Most entries of one kind (labels, lines, codes, URLs) an item's page lists."""


def is_sensitive(names: Iterable[str]) -> bool:
    """Whether any of these label names is, or lies under, a sensitive category."""
    for name in names:
        if name in taxonomy.CATEGORIES and SENSITIVE_L1.intersection(taxonomy.lineage(name)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Score:
    """A label a model gave, with its confidence (0-100) when known."""

    name: str
    confidence: float | None
    parent: str | None
    analyzer: str | None


@dataclass(frozen=True, slots=True)
class Reason:
    """Why the item was sent to review: a policy rule on a label, or a live rule."""

    rule: str
    label: str | None
    confidence: float | None
    threshold: float | None
    action: str | None
    text: str | None


@dataclass(frozen=True, slots=True)
class Line:
    """A line of text read from the media (OCR), or text a live rule matched."""

    text: str
    confidence: float | None
    language: str | None


@dataclass(frozen=True, slots=True)
class Code:
    """A QR code or barcode and what it carries."""

    format: str
    text: str


@dataclass(frozen=True, slots=True)
class ItemView:
    """An item as the work view, the item page and the lists show it."""

    item: ReviewItem
    scores: list[Score] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    sensitive: bool = False
    media_kind: MediaKind | None = None

    @property
    def labels(self) -> list[str]:
        """The item's labels now (the models', with reviewers' corrections)."""
        return [str(n) for n in self.item.labels or []]

    @property
    def media_url(self) -> str:
        return f"/portal/review/items/{self.item.id}/media"

    @property
    def url(self) -> str:
        return f"/portal/review/items/{self.item.id}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v for v in value[:MAX_SHOWN] if isinstance(v, Mapping)]


def _scores(result: Mapping[str, Any]) -> list[Score]:
    best: dict[str, Score] = {}
    for label in _dicts(result.get("labels")):
        name = _text(label.get("name"))
        if not name:
            continue
        score = Score(
            name,
            _number(label.get("confidence")),
            _text(label.get("parent")),
            _text(label.get("analyzer")),
        )
        known = best.get(name)
        if known is None or (score.confidence or 0) > (known.confidence or 0):
            best[name] = score
    return sorted(best.values(), key=lambda s: -(s.confidence or 0))


def _reasons(item: ReviewItem) -> list[Reason]:
    out = []
    for r in _dicts(item.reasons):
        out.append(
            Reason(
                rule=_text(r.get("rule")) or item.rule or "",
                label=_text(r.get("label")),
                confidence=_number(r.get("confidence")),
                threshold=_number(r.get("threshold")),
                action=_text(r.get("action")),
                text=_text(r.get("reason")),
            )
        )
    return out


def _lines(result: Mapping[str, Any]) -> list[Line]:
    lines = [
        Line(str(t["text"]), _number(t.get("confidence")), _text(t.get("language")))
        for t in _dicts(result.get("text"))
        if isinstance(t.get("text"), str)
    ]
    evidence = result.get("evidence")
    if isinstance(evidence, Mapping) and isinstance(evidence.get("text"), list):
        lines += [Line(t, None, None) for t in evidence["text"][:MAX_SHOWN] if isinstance(t, str)]
    return lines


def _urls(result: Mapping[str, Any]) -> list[str]:
    urls = [u for u in result.get("urls") or [] if isinstance(u, str)]
    evidence = result.get("evidence")
    if isinstance(evidence, Mapping):
        urls += [u for u in evidence.get("urls") or [] if isinstance(u, str)]
    return list(dict.fromkeys(urls))[:MAX_SHOWN]


def item_view(item: ReviewItem, media_kind: MediaKind | None = None) -> ItemView:
    """What the pages show of ``item`` (its media's kind found by :func:`find_media_kind`)."""
    result: Mapping[str, Any] = item.result if isinstance(item.result, Mapping) else {}
    scores = _scores(result)
    versions = result.get("versions")
    names = [*(item.labels or []), *(item.categories or []), *(s.name for s in scores)]
    return ItemView(
        item=item,
        scores=scores,
        reasons=_reasons(item),
        lines=_lines(result),
        codes=[
            Code(str(c.get("format") or "code"), str(c["text"]))
            for c in _dicts(result.get("codes"))
            if isinstance(c.get("text"), str)
        ],
        urls=_urls(result),
        versions={str(k): str(v) for k, v in versions.items()}
        if isinstance(versions, dict)
        else {},
        sensitive=is_sensitive(str(n) for n in names),
        media_kind=media_kind,
    )


def find_media_kind(svc: Services, item: ReviewItem) -> MediaKind | None:
    """Whether the item's media is an image or a video (from its bytes), ``expired``
    when retention removed it, None when it has none. Blocking: run it in a thread."""
    path = media_path(svc, item)
    if path is None:
        return None
    if not path.is_file():
        return "expired"
    return "video" if content_type(path).startswith("video/") else "image"


def holds(item: ReviewItem, ref: str, now: datetime | None = None) -> bool:
    """Whether the reviewer written ``ref`` holds the item's lease now."""
    at = now or datetime.now(UTC)
    return (
        item.status == CLAIMED
        and item.claimed_by == ref
        and item.lease_expires_at is not None
        and to_utc(item.lease_expires_at) > at
    )


def may_decide(item: ReviewItem, ref: str, *, moderator: bool, admin: bool) -> bool:
    """Whether a person may decide the item here: an admin any undecided item, a
    moderator one whose lease they hold."""
    if item.status == DECIDED or not moderator:
        return False
    return admin or holds(item, ref)


def actor_name(decision: ReviewDecision, names: Mapping[str, str]) -> str:
    """Who took a decision, for people: a user's name, or the API key's id."""
    if decision.actor_kind == "user":
        return names.get(decision.actor_id, f"user {decision.actor_id}")
    return f"API key {decision.actor_id}"


def claimer_name(ref: str | None, names: Mapping[str, str]) -> str:
    """Who holds (or last held) an item, from its ``claimed_by``."""
    if not ref:
        return ""
    kind, _, ident = ref.partition(":")
    if kind == "user":
        return names.get(ident, f"user {ident}")
    return f"API key {ident}"


def taxonomy_names() -> list[tuple[str, str]]:
    """Every taxonomy label with its L1 (itself for an L1), for the label picker."""
    return [(c.name, c.parent or c.name) for c in taxonomy.CATEGORIES.values()]
