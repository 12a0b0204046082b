"""Labels + policy → decision and reasons, and the one order of decisions
(:data:`SEVERITY`) by which anything made of several results (a video's frames, an audio
file's windows, a video and its sound, search moments) takes the strictest."""

from __future__ import annotations

from collections.abc import Iterable

from bastion.policy.model import Action, Policy
from bastion.results import Label, Reason

SEVERITY: dict[Action, int] = {"allow": 0, "review": 1, "block": 2}
"""How strict each decision is: block over review over allow."""


def strictest(decisions: Iterable[Action]) -> Action:
    """The strictest of ``decisions``; ``allow`` when there are none."""
    out: Action = "allow"
    for d in decisions:
        if SEVERITY[d] > SEVERITY[out]:
            out = d
    return out


def by_severity(reasons: Iterable[Reason]) -> list[Reason]:
    """``reasons`` strictest action first, then most confident first."""
    return sorted(reasons, key=lambda r: (-SEVERITY[r.action], -r.confidence))


def strongest_reasons(reasons: Iterable[Reason]) -> list[Reason]:
    """One reason per rule, label and action — the most confident — in severity order
    (the reasons of several results, e.g. a video's frames, summed up)."""
    best: dict[tuple[str, str, str], Reason] = {}
    for r in reasons:
        key = (r.rule, r.label, r.action)
        if key not in best or r.confidence > best[key].confidence:
            best[key] = r
    return by_severity(best.values())


def decide(policy: Policy, labels: Iterable[Label]) -> tuple[Action, list[Reason]]:
    """The strictest action any rule takes on any label, with every rule that fired."""
    decision: Action = "allow"
    reasons: list[Reason] = []
    for lab in labels:
        for rule in policy.rules:
            if not rule.covers(lab.name, lab.parent):
                continue
            action: Action | None = None
            threshold = 0.0
            if rule.block is not None and lab.confidence >= rule.block:
                action, threshold = "block", rule.block
            elif rule.review is not None and lab.confidence >= rule.review:
                action, threshold = "review", rule.review
            if action is None:
                continue
            reasons.append(
                Reason(
                    rule=rule.display_name,
                    label=lab.name,
                    confidence=lab.confidence,
                    threshold=threshold,
                    action=action,
                    analyzer=lab.analyzer,
                )
            )
            if SEVERITY[action] > SEVERITY[decision]:
                decision = action
    return decision, by_severity(reasons)
