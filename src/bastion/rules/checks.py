"""Whether a rule can fire at all under the analysis policy its rule set runs.

What a rule is checked against at validation time depends on the rule set alone (see
:mod:`bastion.rules.spec`); whether it could ever fire depends on the policy too, which
may change apart from the rules, so the API runs :func:`feasibility_issues` at save
time with the :class:`Capabilities` of the rule set's policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.policy import taxonomy
from bastion.rules.errors import Issue
from bastion.rules.spec import RuleSpec


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an analysis policy can find: label categories (L1 parents included) and
    kinds of output (``text`` from OCR, ``codes`` from the code reader)."""

    policy: str
    categories: frozenset[str]
    emits: frozenset[str]

    def detects(self, category: str) -> bool:
        if category == "*" or category in self.categories:
            return True
        return any(child in self.categories for child in taxonomy.children(category))


def feasibility_issues(rules: Sequence[RuleSpec], caps: Capabilities) -> list[Issue]:
    """Rules that could never fire under the policy ``caps`` describes (paths
    ``rules.<index>...`` into ``rules``)."""
    out: list[Issue] = []
    has_text, has_codes = "text" in caps.emits, "codes" in caps.emits
    for i, rule in enumerate(rules):
        if rule.categories and not any(caps.detects(c) for c in rule.categories):
            out.append(
                Issue(
                    ("rules", i, "categories"),
                    f"rule {rule.name!r} can never fire: policy {caps.policy!r} runs no "
                    f"analyzer that emits {', '.join(rule.categories)}",
                )
            )
        if rule.text is not None and not has_text:
            out.append(
                Issue(
                    ("rules", i, "text"),
                    f"rule {rule.name!r} can never fire: policy {caps.policy!r} runs no OCR "
                    "analyzer, so frames have no text",
                )
            )
        if rule.urls is not None:
            usable = ("codes" in rule.urls.sources and has_codes) or (
                "text" in rule.urls.sources and has_text
            )
            if not usable:
                out.append(
                    Issue(
                        ("rules", i, "urls"),
                        f"rule {rule.name!r} can never fire: policy {caps.policy!r} reads no "
                        f"{' or '.join(rule.urls.sources)} to find URLs in",
                    )
                )
        if rule.lists is not None and not (has_text or has_codes):
            out.append(
                Issue(
                    ("rules", i, "lists"),
                    f"rule {rule.name!r} can never fire: policy {caps.policy!r} runs neither "
                    "OCR nor a code reader, so there is no text or URL to check lists against",
                )
            )
    return out
