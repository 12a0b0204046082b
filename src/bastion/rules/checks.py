"""Checks across fields of rules and rule sets, and whether a rule can fire at all.

The first three functions run inside model validation (see :mod:`bastion.rules.spec`);
:func:`feasibility_issues` needs to know what the analysis policy can detect, so the
API runs it at save time with the :class:`Capabilities` of the rule set's policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bastion.policy import taxonomy
from bastion.rules.errors import Issue, Path
from bastion.rules.regex import RegexRefused, compile_regex

if TYPE_CHECKING:
    from bastion.rules.spec import IgnoreSimilar, RulesDocument, RuleSetSpec, RuleSpec

HASH_BITS: dict[str, int] = {"pdq": 256, "dhash": 64}
# One rule set's regular expressions together: how many, and how large their RE2
# programs may be (every one is kept compiled while the rule set is in use).
MAX_RULE_SET_REGEXES = 200
MAX_RULE_SET_PROGRAM = 200_000


def _default(model: BaseModel, name: str) -> Any:
    return type(model).model_fields[name].default


def rule_issues(rule: RuleSpec) -> list[Issue]:
    out: list[Issue] = []
    if not rule.categories and rule.text is None and rule.urls is None and rule.lists is None:
        out.append(
            Issue(
                (),
                f"rule {rule.name!r} has no categories and no text, urls or lists condition: "
                "it would fire on every frame",
            )
        )
    # a value other than the default: a full dump of a valid rule reads back as valid
    if not rule.categories and rule.min_confidence != _default(rule, "min_confidence"):
        out.append(
            Issue(
                ("min_confidence",),
                "min_confidence applies to labels of 'categories' and this rule has none, "
                "so it would never be used",
            )
        )
    seen: dict[str, int] = {}
    for i, cat in enumerate(rule.categories):
        if cat in seen:
            out.append(Issue(("categories", i), f"category {cat!r} listed twice"))
        seen.setdefault(cat, i)
    return out


def similarity_issues(similar: IgnoreSimilar) -> list[Issue]:
    bits = HASH_BITS[similar.hash]
    if similar.threshold < bits:
        return []
    return [
        Issue(
            ("threshold",),
            f"a {similar.hash} hash has {bits} bits: a threshold of {similar.threshold} "
            f"would call every frame similar and skip all but the first (use at most "
            f"{bits - 1})",
        )
    ]


def rule_set_issues(rs: RuleSetSpec) -> list[Issue]:
    out: list[Issue] = []
    if rs.channel is not None and rs.channel_pattern is not None:
        out.append(
            Issue(
                ("channel_pattern",),
                "give either 'channel' (one channel, exact name) or 'channel_pattern' "
                "(a global rule set), not both",
            )
        )
    elif rs.channel is None and rs.channel_pattern is None:
        out.append(
            Issue(
                (),
                "give 'channel' (one channel, exact name) or 'channel_pattern' "
                "(a global rule set, e.g. '.*' for every channel)",
            )
        )
    if rs.channel is not None and rs.priority != _default(rs, "priority"):
        out.append(
            Issue(
                ("priority",),
                "priority orders global rule sets; a channel rule set always wins over them",
            )
        )
    first: dict[str, int] = {}
    for i, rule in enumerate(rs.rules):
        if rule.name in first:
            out.append(
                Issue(
                    ("rules", i, "name"),
                    f"rule name {rule.name!r} used twice (first at rules.{first[rule.name]})",
                )
            )
        first.setdefault(rule.name, i)
    if rs.enabled and not any(r.enabled for r in rs.rules):
        out.append(Issue(("rules",), "every rule is disabled: the rule set could never fire"))
    out.extend(regex_budget_issues(rs))
    return out


def _regexes(rs: RuleSetSpec) -> list[tuple[Path, str, bool]]:
    found: list[tuple[Path, str, bool]] = []
    if rs.channel_pattern is not None:
        found.append((("channel_pattern",), rs.channel_pattern, False))
    for i, rule in enumerate(rs.rules):
        for kind, cond in (("text", rule.text), ("urls", rule.urls)):
            if cond is not None:
                found += [
                    (("rules", i, kind, "regex", j), p, cond.ignore_case)
                    for j, p in enumerate(cond.regex)
                ]
    return found


def regex_budget_issues(rs: RuleSetSpec) -> list[Issue]:
    """The first regular expression over the rule set's budget (their count, then the
    size of their RE2 programs together)."""
    found = _regexes(rs)
    if len(found) > MAX_RULE_SET_REGEXES:
        path = found[MAX_RULE_SET_REGEXES][0]
        return [
            Issue(
                path,
                f"a rule set may hold at most {MAX_RULE_SET_REGEXES} regular expressions; "
                f"this one has {len(found)}",
                code="regex_too_large",
            )
        ]
    total = 0
    for path, pattern, ignore_case in found:
        try:
            total += compile_regex(pattern, ignore_case=ignore_case).program_size
        except RegexRefused:  # reported where the pattern is validated
            continue
        if total > MAX_RULE_SET_PROGRAM:
            return [
                Issue(
                    path,
                    "the rule set's regular expressions together compile to more than "
                    f"{MAX_RULE_SET_PROGRAM} RE2 instructions; use fewer or simpler ones "
                    "(a Unicode \\w costs about 1350)",
                    code="regex_too_large",
                )
            ]
    return []


def document_issues(doc: RulesDocument) -> list[Issue]:
    out: list[Issue] = []
    names: dict[str, int] = {}
    channels: dict[str, int] = {}
    for i, rs in enumerate(doc.rule_sets):
        if rs.name in names:
            out.append(
                Issue(
                    ("rule_sets", i, "name"),
                    f"rule set name {rs.name!r} used twice (first at rule_sets.{names[rs.name]})",
                )
            )
        names.setdefault(rs.name, i)
        if rs.channel is not None:
            if rs.channel in channels:
                out.append(
                    Issue(
                        ("rule_sets", i, "channel"),
                        f"channel {rs.channel!r} already has a rule set "
                        f"(rule_sets.{channels[rs.channel]})",
                    )
                )
            channels.setdefault(rs.channel, i)
    return out


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
