"""Evaluate a resolved rule set on one frame's moderation result.

:func:`evaluate` gives the rules that fired; :func:`explain` gives every rule with
each of its conditions, held or not, and why — what ``POST /v1/rules/test`` shows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists
from bastion.results import Label, ModerationResult
from bastion.rules.compiled import CompiledRule, ResolvedRules
from bastion.rules.spec import Action, action_strength

ConditionKind = Literal["categories", "text", "urls", "lists"]
_MAX_SHOWN = 10
_MAX_TEXT = 4000


class LabelHit(BaseModel):
    """A label a rule looked at, with the threshold it was held against."""

    name: str = Field(description="Taxonomy label.")
    parent: str | None = Field(None, description="Its L1 label.")
    confidence: float = Field(description="The label's confidence, 0-100.")
    threshold: float = Field(description="The rule's min_confidence.")
    analyzer: str = Field(description="The analyzer that emitted the label.")


class ConditionCheck(BaseModel):
    """One condition of a rule on one frame."""

    kind: ConditionKind = Field(description="categories, text, urls or lists.")
    held: bool = Field(description="Whether the condition holds on this frame.")
    detail: str = Field(description="Why it holds or does not.")
    labels: list[LabelHit] = Field(
        default_factory=list,
        description="categories: labels at or above the threshold; when none, the closest one.",
    )
    matches: list[str] = Field(
        default_factory=list, description="text and lists: the text or words that matched."
    )
    urls: list[str] = Field(default_factory=list, description="urls and lists: matched URLs.")


class RuleOutcome(BaseModel):
    """A rule on one frame: whether it fired, and each condition's check."""

    rule: str = Field(description="Rule name.")
    action: Action = Field(description="What the rule does when it fires.")
    fired: bool = Field(description="True when every condition held.")
    reason: str = Field(description="The conditions that held (fired) or failed (not fired).")
    conditions: list[ConditionCheck] = Field(description="Every condition the rule has.")


class RuleMatch(BaseModel):
    """A rule that fired on a frame."""

    rule_set: str = Field(description="The rule set's name.")
    rule: str = Field(description="The rule's name.")
    action: Action = Field(description="'alert', 'review' or 'auto_stop'.")
    labels: list[tuple[str, float]] = Field(
        default_factory=list, description="Matched labels as (name, confidence)."
    )
    text: list[str] = Field(default_factory=list, description="Matched text or words.")
    urls: list[str] = Field(default_factory=list, description="Matched URLs.")
    reason: str = Field(description="Why it fired, for people.")


def _fmt(value: float) -> str:
    return f"{value:g}"


def _categories(rule: CompiledRule, result: ModerationResult) -> ConditionCheck:
    threshold = rule.spec.min_confidence
    best: dict[str, Label] = {}
    for lab in result.labels:
        if not rule.covers(lab.name, lab.parent):
            continue
        if lab.name not in best or lab.confidence > best[lab.name].confidence:
            best[lab.name] = lab
    covered = sorted(best.values(), key=lambda lab: -lab.confidence)
    hits = [lab for lab in covered if lab.confidence >= threshold]

    def hit(lab: Label) -> LabelHit:
        return LabelHit(
            name=lab.name,
            parent=lab.parent,
            confidence=lab.confidence,
            threshold=threshold,
            analyzer=lab.analyzer,
        )

    if hits:
        detail = ", ".join(f"{h.name} {_fmt(h.confidence)} ≥ {_fmt(threshold)}" for h in hits)
        return ConditionCheck(
            kind="categories", held=True, detail=detail, labels=[hit(h) for h in hits]
        )
    if covered:
        top = covered[0]
        detail = (
            f"highest label of {', '.join(rule.spec.categories)} is {top.name} at "
            f"{_fmt(top.confidence)}, below {_fmt(threshold)}"
        )
        return ConditionCheck(kind="categories", held=False, detail=detail, labels=[hit(top)])
    return ConditionCheck(
        kind="categories",
        held=False,
        detail=f"no label of {', '.join(rule.spec.categories)} in the frame",
    )


def _text(rule: CompiledRule, result: ModerationResult) -> ConditionCheck:
    lines = [t.text for t in result.text if t.text.strip()]
    if not rule.text_patterns and rule.text_words is None:
        held = bool(lines)
        detail = f"the frame has text: {lines[0]!r}" if held else "the frame has no text"
        return ConditionCheck(kind="text", held=held, detail=detail, matches=lines[:_MAX_SHOWN])
    if not lines:
        return ConditionCheck(kind="text", held=False, detail="the frame has no text")
    # one line at a time, and all of them joined for phrases split across lines; capped,
    # as a tenant's regular expression runs on every frame
    texts = lines if len(lines) == 1 else [*lines, "\n".join(lines)]
    texts = [t[:_MAX_TEXT] for t in texts]
    found: list[str] = []
    notes: list[str] = []
    for pattern in rule.text_patterns:
        for text in texts:
            match = pattern.search(text)
            if match is not None:
                found.append(match)
                notes.append(f"/{pattern.pattern}/ matched {match!r}")
                break
    if rule.text_words is not None:
        for text in texts:
            words = [w for w in rule.text_words.blocked_words(text) if w not in found]
            found.extend(words)
            notes.extend(f"word {w!r} in {text!r}" for w in words)
    if found:
        return ConditionCheck(
            kind="text", held=True, detail="; ".join(notes), matches=found[:_MAX_SHOWN]
        )
    shown = "; ".join(repr(line) for line in lines[:3])
    return ConditionCheck(
        kind="text", held=False, detail=f"no regex or word matches the text ({shown})"
    )


def _frame_urls(rule: CompiledRule, result: ModerationResult) -> list[str]:
    """The distinct URLs the rule's sources gave the frame, codes' first: those the engine
    found (:attr:`~bastion.results.ModerationResult.url_origins`), not searched again."""
    sources = rule.spec.urls.sources if rule.spec.urls is not None else []
    return list(dict.fromkeys(o.url for o in result.url_origins if o.source in sources))


def _urls(rule: CompiledRule, result: ModerationResult) -> ConditionCheck:
    urls = _frame_urls(rule, result)
    where = " or ".join(rule.spec.urls.sources) if rule.spec.urls is not None else ""
    if not urls:
        return ConditionCheck(kind="urls", held=False, detail=f"no URL found in {where}")
    if not rule.url_patterns and rule.url_domains is None:
        return ConditionCheck(
            kind="urls",
            held=True,
            detail=f"URL found in {where}: {urls[0]}",
            urls=urls[:_MAX_SHOWN],
        )
    found: list[str] = []
    notes: list[str] = []
    for url in urls:
        domain = rule.url_domains.blocked_domain(url) if rule.url_domains is not None else None
        if domain is not None:
            found.append(url)
            notes.append(f"{url} is on {domain}")
            continue
        pattern = next((p for p in rule.url_patterns if p.search(url) is not None), None)
        if pattern is not None:
            found.append(url)
            notes.append(f"{url} matches /{pattern.pattern}/")
    if found:
        return ConditionCheck(
            kind="urls", held=True, detail="; ".join(notes), urls=found[:_MAX_SHOWN]
        )
    return ConditionCheck(
        kind="urls",
        held=False,
        detail=f"no URL on the rule's domains or matching its regex ({', '.join(urls[:3])})",
    )


def _lists(
    rule: CompiledRule, result: ModerationResult, lists: CompiledLists | None
) -> ConditionCheck:
    wanted = rule.spec.lists or []
    if lists is None:
        return ConditionCheck(kind="lists", held=False, detail="no tenant lists were given")
    words: list[str] = []
    urls: list[str] = []
    notes: list[str] = []
    if "blocked_words" in wanted:
        texts = [t.text for t in result.text] + [c.text for c in result.codes]
        for text in texts:
            for word in lists.blocked_words(text):
                if word not in words:
                    words.append(word)
                    notes.append(f"blocked word {word!r} in {text!r}")
    if "blocked_domains" in wanted:
        for url in result.urls:
            domain = lists.blocked_domain(url)
            if domain is not None:
                urls.append(url)
                notes.append(f"{url} is on blocked domain {domain}")
    if words or urls:
        return ConditionCheck(
            kind="lists",
            held=True,
            detail="; ".join(notes),
            matches=words[:_MAX_SHOWN],
            urls=urls[:_MAX_SHOWN],
        )
    return ConditionCheck(
        kind="lists",
        held=False,
        detail=f"nothing in the frame is on the tenant's {', '.join(wanted)}",
    )


def _outcome(
    rule: CompiledRule, result: ModerationResult, lists: CompiledLists | None
) -> RuleOutcome:
    checks: list[ConditionCheck] = []
    if rule.spec.categories:
        checks.append(_categories(rule, result))
    if rule.spec.text is not None:
        checks.append(_text(rule, result))
    if rule.spec.urls is not None:
        checks.append(_urls(rule, result))
    if rule.spec.lists is not None:
        checks.append(_lists(rule, result, lists))
    fired = all(c.held for c in checks)
    shown = checks if fired else [c for c in checks if not c.held]
    return RuleOutcome(
        rule=rule.name,
        action=rule.spec.action,
        fired=fired,
        reason="; ".join(f"{c.kind}: {c.detail}" for c in shown),
        conditions=checks,
    )


def _compiled(lists: Lists | CompiledLists | None) -> CompiledLists | None:
    if lists is None or isinstance(lists, CompiledLists):
        return lists
    return CompiledLists(lists, "tenant")


def explain(
    resolved: ResolvedRules,
    result: ModerationResult,
    lists: Lists | CompiledLists | None = None,
) -> list[RuleOutcome]:
    """Every enabled rule of ``resolved`` on ``result``, fired or not, with why.

    ``lists`` are the tenant's word and domain lists the ``lists`` condition checks;
    pass them compiled (:class:`CompiledLists`) when evaluating many frames."""
    compiled = _compiled(lists)
    return [_outcome(rule, result, compiled) for rule in resolved.rules]


def evaluate(
    resolved: ResolvedRules,
    result: ModerationResult,
    lists: Lists | CompiledLists | None = None,
) -> list[RuleMatch]:
    """The rules that fired on ``result``, strongest action first (``auto_stop``, then
    ``review``, then ``alert``), in rule order among equals."""
    matches: list[RuleMatch] = []
    for outcome in explain(resolved, result, lists):
        if not outcome.fired:
            continue
        labels: list[tuple[str, float]] = []
        text: list[str] = []
        urls: list[str] = []
        for check in outcome.conditions:
            labels += [(h.name, h.confidence) for h in check.labels]
            text += [m for m in check.matches if m not in text]
            urls += [u for u in check.urls if u not in urls]
        matches.append(
            RuleMatch(
                rule_set=resolved.name,
                rule=outcome.rule,
                action=outcome.action,
                labels=labels,
                text=text,
                urls=urls,
                reason=outcome.reason,
            )
        )
    matches.sort(key=lambda m: -action_strength(m.action))
    return matches
