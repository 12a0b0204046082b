"""Live-stream rule sets as configuration: what a tenant writes in YAML or JSON.

A rule set applies to one channel (``channel``, an exact name) or, as a global rule
set, to every channel whose name a regular expression finds a match in
(``channel_pattern``, e.g. ``.*`` or ``^test-``). It says how often frames are sampled,
whether frames similar to the last analysed one are skipped, which analysis policy
runs, and its rules. A rule fires when a label of one of its ``categories`` reaches
``min_confidence`` and every other condition it has (OCR text, URLs, the tenant's
lists) holds; then it does its action: ``alert`` raises an alert for moderators,
``review`` raises it and queues it (with its frame) in the review queue, ``auto_stop``
raises it and stops the stream.

Field checks (ranges, names, regular expressions, categories) point at the item;
checks across fields (a rule with no condition, duplicate names, the regular
expressions of a rule set together) are at the end of this module and are reported
through the ``rule_checks`` error type with a path of their own. Whether a rule could
fire under its policy is not a property of the document: see :mod:`bastion.rules.checks`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import idna
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from bastion.parsing.bounded import at_most
from bastion.policy import taxonomy
from bastion.policy.model import POLICY_NAME
from bastion.results import UrlSource
from bastion.rules.errors import Issue, Path, dotted
from bastion.rules.regex import MAX_PATTERN_CHARS, RegexRefused, compile_regex

Action = Literal["alert", "review", "auto_stop"]
ACTIONS: tuple[Action, ...] = ("alert", "review", "auto_stop")
"""Every action, weakest first: a stronger one does all a weaker one does."""
HashKind = Literal["pdq", "dhash"]
ListName = Literal["blocked_words", "blocked_domains"]
_ALL_SOURCES: tuple[UrlSource, ...] = ("codes", "text")

DEFAULT_TIERS: dict[str, float] = {"trusted": 3.0, "standard": 1.0, "new": 0.5}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"

# Bounds on what one document may hold, so that validating, compiling and evaluating a
# hostile rule set stays cheap (the document's size and value count are bounded too:
# see bastion.rules.loader).
MAX_RULE_SETS = 500  # per document, and per tenant
MAX_RULES = 500  # per rule set
MAX_REGEXES = 20  # per text or urls condition
MAX_WORDS = 1000  # words of a text condition, domains of a urls condition
MAX_CATEGORIES = 200
MAX_TIERS = 32
# One rule set's regular expressions together: how many, and how large their RE2
# programs may be (every one is kept compiled while the rule set is in use).
MAX_RULE_SET_REGEXES = 200
MAX_RULE_SET_PROGRAM = 200_000
HASH_BITS: dict[str, int] = {"pdq": 256, "dhash": 64}
REGEX_ERRORS = ("bad_regex", "regex_unsupported", "regex_too_large")


def action_strength(action: str) -> int:
    """How strong an action is (the index in :data:`ACTIONS`; -1 for none of them)."""
    return ACTIONS.index(action) if action in ACTIONS else -1


def check_regex(pattern: str) -> str:
    """A regular expression Bastion runs (in linear time, with RE2; see
    :mod:`bastion.rules.regex`); the error says what is wrong and where."""
    try:
        compile_regex(pattern, ignore_case=True)  # the larger program of the two
    except RegexRefused as exc:
        raise PydanticCustomError(
            exc.kind, "{message}", {"position": exc.position, "message": exc.message}
        ) from None
    return pattern


def check_category(name: str) -> str:
    """A taxonomy name (L1 or L2) or ``*``; close names are suggested for typos."""
    if name == "*" or name in taxonomy.CATEGORIES:
        return name
    folded = {c.casefold(): c for c in taxonomy.CATEGORIES}
    close = difflib.get_close_matches(name, list(taxonomy.CATEGORIES), n=3, cutoff=0.6)
    if name.casefold() in folded:
        close = [folded[name.casefold()]]
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "L1 categories are " + ", ".join(taxonomy.L1) + " (or '*' for all)"
    raise PydanticCustomError(
        "unknown_category", "unknown category {name}; {hint}", {"name": repr(name), "hint": hint}
    )


def check_domain(value: str) -> str:
    """A bare domain (``spam.example``), stored lower-case and in ASCII (punycode)."""
    domain = value.strip().strip(".")
    if not domain or any(ch in domain for ch in "/:@ \t") or "://" in value:
        raise PydanticCustomError(
            "bad_domain",
            "{value} is not a domain: give a bare name such as 'spam.example'",
            {"value": repr(value)},
        )
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise PydanticCustomError(
            "bad_domain",
            "{value} is not a valid domain: {error}",
            {"value": repr(value), "error": str(exc)},
        ) from None


Regex = Annotated[
    str, Field(min_length=1, max_length=MAX_PATTERN_CHARS), AfterValidator(check_regex)
]
CategoryName = Annotated[str, Field(max_length=100), AfterValidator(check_category)]
Domain = Annotated[str, Field(max_length=253), AfterValidator(check_domain)]
Name = Annotated[str, Field(pattern=_NAME)]
TierName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")]
Multiplier = Annotated[float, Field(gt=0, le=100)]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


class TextCondition(BaseModel):
    """Holds when the OCR text of the frame matches a regex or contains a word.

    With neither ``regex`` nor ``words`` it holds whenever the frame has any text."""

    model_config = ConfigDict(extra="forbid")

    regex: list[Regex] = Field(
        default_factory=list,
        max_length=MAX_REGEXES,
        description="Regular expressions (Python syntax and meaning, run in linear time by "
        "RE2: no backreferences or lookarounds; at most 1000 characters each, "
        f"{MAX_REGEXES} per condition) searched in each text line and in all lines joined "
        "by newlines; one string or a list.",
    )
    words: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]], at_most(MAX_WORDS)
    ] = Field(
        default_factory=list,
        max_length=MAX_WORDS,
        description="Words or phrases, matched as whole words after Unicode NFKC folding and "
        "case folding (substrings for scripts without spaces); at most "
        f"{MAX_WORDS} of at most 200 characters.",
    )
    ignore_case: bool = Field(True, description="Match the regular expressions ignoring case.")

    @model_validator(mode="before")
    @classmethod
    def _one_regex(cls, data: object) -> object:
        if isinstance(data, dict) and "regex" in data:
            data = {**data, "regex": _as_list(data["regex"])}
        return data


class UrlCondition(BaseModel):
    """Holds when a URL found in the frame (in a QR code/barcode or in the OCR text) is on
    one of ``domains`` or matches a regex; with neither, whenever there is any URL."""

    model_config = ConfigDict(extra="forbid")

    domains: Annotated[list[Domain], at_most(MAX_WORDS)] = Field(
        default_factory=list,
        max_length=MAX_WORDS,
        description=f"Domains (at most {MAX_WORDS}); a URL on the domain or any subdomain of "
        "it matches.",
    )
    regex: list[Regex] = Field(
        default_factory=list,
        max_length=MAX_REGEXES,
        description="Regular expressions (as for text, at most "
        f"{MAX_REGEXES}) searched in each normalised URL; one string or a list.",
    )
    sources: list[UrlSource] = Field(
        default_factory=lambda: list(_ALL_SOURCES),
        min_length=1,
        max_length=len(_ALL_SOURCES),
        description="Where URLs count from: decoded codes, OCR text, or both.",
    )
    ignore_case: bool = Field(True, description="Match the regular expressions ignoring case.")

    @model_validator(mode="before")
    @classmethod
    def _one_regex(cls, data: object) -> object:
        if isinstance(data, dict) and "regex" in data:
            data = {**data, "regex": _as_list(data["regex"])}
        return data


class RuleSpec(BaseModel):
    """One rule: categories at a confidence, optional conditions, and what to do."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Rule name, unique in its rule set; shown in alerts.")
    enabled: bool = Field(True, description="A disabled rule is kept but never evaluated.")
    categories: list[CategoryName] = Field(
        default_factory=list,
        max_length=MAX_CATEGORIES,
        description="Taxonomy labels (an L1 covers its L2 labels) or '*' for any label. "
        "Empty: the rule is decided by its other conditions alone.",
    )
    min_confidence: float = Field(
        50.0, ge=0, le=100, description="Confidence (0-100) a label must reach."
    )
    action: Action = Field(
        "alert",
        description="'alert' tells moderators; 'review' also queues the alert, with its "
        "frame, for review; 'auto_stop' stops the stream too.",
    )
    text: TextCondition | None = Field(None, description="A condition on the frame's OCR text.")
    urls: UrlCondition | None = Field(None, description="A condition on URLs found in the frame.")
    lists: list[ListName] | None = Field(
        None,
        min_length=1,
        max_length=2,
        description="Holds when the frame hits any of these tenant lists: 'blocked_words' "
        "(OCR or code text) or 'blocked_domains' (a URL found in the frame).",
    )

    @model_validator(mode="after")
    def _checks(self) -> RuleSpec:
        raise_issues(_rule_issues(self))
        return self


class IgnoreSimilar(BaseModel):
    """Skip a frame whose perceptual hash is close to the last analysed frame's."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Skip similar frames.")
    hash: HashKind = Field("pdq", description="'pdq' (256 bits) or 'dhash' (64 bits).")
    threshold: int = Field(
        31,
        ge=0,
        le=255,
        description="Most bits in which two hashes may differ for the frames to count as "
        "similar; must be below the hash's size.",
    )

    @model_validator(mode="after")
    def _checks(self) -> IgnoreSimilar:
        raise_issues(_similarity_issues(self))
        return self


class RuleSetSpec(BaseModel):
    """A rule set for one channel, or for every channel a pattern matches."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Rule set name, unique per tenant.")
    description: str = Field("", max_length=1000, description="What the rule set is for.")
    enabled: bool = Field(True, description="A disabled rule set never applies.")
    channel: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="The exact channel name this rule set is for; it overrides global ones.",
    )
    channel_pattern: Regex | None = Field(
        None,
        description="A global rule set: applies to channels in whose name this regular "
        "expression (as for text rules: linear time, no backreferences or lookarounds) "
        "finds a match ('.*' all, '^test-' names starting with 'test-').",
    )
    priority: int = Field(
        100,
        ge=0,
        le=1_000_000,
        description="Among global rule sets matching a channel the lowest number wins "
        "(ties: the first name in order).",
    )
    sample_interval_s: float = Field(
        10.0, gt=0, le=86_400, description="Seconds between sampled frames (standard tier)."
    )
    ignore_similar: IgnoreSimilar = Field(
        default_factory=IgnoreSimilar, description="Skip frames similar to the last one."
    )
    policy: str | None = Field(
        None,
        pattern=POLICY_NAME,
        description="The analysis policy whose analyzers run on frames; none: the tenant's "
        "default policy.",
    )
    tiers: dict[TierName, Multiplier] = Field(
        default_factory=lambda: dict(DEFAULT_TIERS),
        max_length=MAX_TIERS,
        description="Streamer reputation tiers and the factor each multiplies the sampling "
        "interval by (trusted streamers sampled less often, new ones more); a tier not "
        f"listed gets 1 (at most {MAX_TIERS} tiers).",
    )
    rules: Annotated[list[RuleSpec], at_most(MAX_RULES)] = Field(
        min_length=1,
        max_length=MAX_RULES,
        description=f"The rules (at most {MAX_RULES}), evaluated on every frame.",
    )

    @model_validator(mode="after")
    def _checks(self) -> RuleSetSpec:
        raise_issues(_rule_set_issues(self))
        return self

    @property
    def scope(self) -> Literal["channel", "global"]:
        return "channel" if self.channel is not None else "global"


class RulesDocument(BaseModel):
    """Every rule set of a tenant, as exported and imported."""

    model_config = ConfigDict(extra="forbid")

    rule_sets: Annotated[list[RuleSetSpec], at_most(MAX_RULE_SETS)] = Field(
        default_factory=list,
        max_length=MAX_RULE_SETS,
        description=f"The rule sets (at most {MAX_RULE_SETS}); names and channels unique.",
    )

    @model_validator(mode="after")
    def _checks(self) -> RulesDocument:
        raise_issues(_document_issues(self))
        return self


def raise_issues(issues: Sequence[Issue]) -> None:
    """Report checks across fields as one ``rule_checks`` error carrying every issue;
    :mod:`bastion.rules.loader` unpacks them, each with its own path."""
    if issues:
        first = issues[0]
        summary = f"{dotted(first.path)}: {first.message}" if first.path else first.message
        raise PydanticCustomError(
            "rule_checks", "{summary}", {"summary": summary, "issues": list(issues)}
        )


# ---- checks across fields ------------------------------------------------------------


def _default(model: BaseModel, name: str) -> Any:
    return type(model).model_fields[name].default


def _rule_issues(rule: RuleSpec) -> list[Issue]:
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


def _similarity_issues(similar: IgnoreSimilar) -> list[Issue]:
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


def _rule_set_issues(rs: RuleSetSpec) -> list[Issue]:
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
    out.extend(_regex_budget_issues(rs))
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


def _regex_budget_issues(rs: RuleSetSpec) -> list[Issue]:
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


def _document_issues(doc: RulesDocument) -> list[Issue]:
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
