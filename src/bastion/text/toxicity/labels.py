"""Toxicity scores as taxonomy labels (``Toxic Speech / ...``) for policies and rules."""

from __future__ import annotations

from bastion.policy import taxonomy
from bastion.results import Label
from bastion.text.toxicity.categories import CATEGORIES, TAXONOMY_LABELS, ToxicityCategory
from bastion.text.toxicity.result import ToxicityResult

ANALYZER = "toxicity"


def toxicity_labels(
    result: ToxicityResult,
    thresholds: dict[ToxicityCategory, float],
    *,
    version: str,
    source: str | None = None,
) -> list[Label]:
    """One L2 label per category at or above its threshold (0.5 when not given).

    Confidence is the score times 100; ``model`` names the scorer behind the score and
    ``source`` what the label is about (e.g. a segment's time range).
    """
    out: list[Label] = []
    for category in CATEGORIES:
        score = result.scores.get(category, 0.0)
        if score <= 0.0 or score < thresholds.get(category, 0.5):
            continue
        top = result.top(category)
        out.append(
            taxonomy.label(
                TAXONOMY_LABELS[category],
                score * 100.0,
                analyzer=ANALYZER,
                model=top.scorer if top else ANALYZER,
                version=version,
                source=source,
            )
        )
    return out
