"""Labels + policy → decision and reasons."""

from __future__ import annotations

from collections.abc import Iterable

from bastion.policy.model import Action, Policy
from bastion.results import Label, Reason

_SEVERITY: dict[Action, int] = {"allow": 0, "review": 1, "block": 2}


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
            if _SEVERITY[action] > _SEVERITY[decision]:
                decision = action
    reasons.sort(key=lambda r: (-_SEVERITY[r.action], -r.confidence))
    return decision, reasons
