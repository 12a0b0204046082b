"""Rule sets compiled once per version, the choice of rule set for a channel, and
what a stream session gets back: :class:`ResolvedRules`.

Regular expressions are compiled for RE2 (:mod:`bastion.rules.regex`), so matching a
channel name, an OCR line or a URL takes time linear in its length whatever the
tenant wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists
from bastion.rules.loader import spec_version
from bastion.rules.regex import TenantRegex, compile_regex
from bastion.rules.spec import RuleSetSpec, RuleSpec


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its regular expressions and word/domain matchers built."""

    spec: RuleSpec
    categories: frozenset[str]
    text_patterns: tuple[TenantRegex, ...]
    text_words: CompiledLists | None
    url_patterns: tuple[TenantRegex, ...]
    url_domains: CompiledLists | None

    @property
    def name(self) -> str:
        return self.spec.name

    def covers(self, label: str, parent: str | None) -> bool:
        cats = self.categories
        return "*" in cats or label in cats or (parent is not None and parent in cats)


def compile_rule(spec: RuleSpec, version: str) -> CompiledRule:
    text, urls = spec.text, spec.urls
    words = (
        CompiledLists(Lists(blocked_words=text.words), f"{version}:{spec.name}:words")
        if text is not None and text.words
        else None
    )
    domains = (
        CompiledLists(Lists(blocked_domains=urls.domains), f"{version}:{spec.name}:domains")
        if urls is not None and urls.domains
        else None
    )
    return CompiledRule(
        spec=spec,
        categories=frozenset(spec.categories),
        text_patterns=tuple(compile_regex(p, ignore_case=text.ignore_case) for p in text.regex)
        if text is not None
        else (),
        text_words=words,
        url_patterns=tuple(compile_regex(p, ignore_case=urls.ignore_case) for p in urls.regex)
        if urls is not None
        else (),
        url_domains=domains,
    )


@dataclass(frozen=True, slots=True)
class ResolvedRules:
    """The rule set that applies to one channel and streamer tier, ready to evaluate."""

    rule_set_id: int | None  # None: a rule set from configuration or given inline
    name: str
    version: str
    scope: Literal["channel", "global"]
    tier: str
    tier_multiplier: float
    sample_interval_s: float  # already scaled by the tier
    similarity_threshold: int | None  # Hamming bits; None: similar frames are not skipped
    similarity_hash: str  # 'pdq' or 'dhash', the hash the threshold is in
    policy: str | None  # analysis policy name; None: the tenant's default
    rules: tuple[CompiledRule, ...]  # enabled rules only, in order


@dataclass(frozen=True, slots=True)
class CompiledRuleSet:
    """A validated rule set with every regular expression compiled."""

    spec: RuleSetSpec
    version: str
    rule_set_id: int | None
    channel_re: TenantRegex | None
    rules: tuple[CompiledRule, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    def applies_to(self, channel: str) -> bool:
        if not self.spec.enabled:
            return False
        if self.spec.channel is not None:
            return self.spec.channel == channel
        return self.channel_re is not None and self.channel_re.search(channel) is not None

    def resolve(self, tier: str = "standard") -> ResolvedRules:
        spec = self.spec
        multiplier = spec.tiers.get(tier, 1.0)
        similar = spec.ignore_similar
        return ResolvedRules(
            rule_set_id=self.rule_set_id,
            name=spec.name,
            version=self.version,
            scope=spec.scope,
            tier=tier,
            tier_multiplier=multiplier,
            sample_interval_s=round(spec.sample_interval_s * multiplier, 6),
            similarity_threshold=similar.threshold if similar.enabled else None,
            similarity_hash=similar.hash,
            policy=spec.policy,
            rules=tuple(r for r in self.rules if r.spec.enabled),
        )


def compile_rule_set(spec: RuleSetSpec, rule_set_id: int | None = None) -> CompiledRuleSet:
    version = spec_version(spec)
    return CompiledRuleSet(
        spec=spec,
        version=version,
        rule_set_id=rule_set_id,
        channel_re=compile_regex(spec.channel_pattern)
        if spec.channel_pattern is not None
        else None,
        rules=tuple(compile_rule(r, version) for r in spec.rules),
    )


def choose(rule_sets: Iterable[CompiledRuleSet], channel: str) -> CompiledRuleSet | None:
    """The rule set for ``channel``: its own (exact name) if enabled, else the matching
    global rule set with the lowest priority number (ties: the first name in order)."""
    best: CompiledRuleSet | None = None
    for rs in rule_sets:
        if not rs.applies_to(channel):
            continue
        if rs.spec.channel is not None:
            return rs
        if best is None or (rs.spec.priority, rs.name) < (best.spec.priority, best.name):
            best = rs
    return best
