"""Policy: which analyzers run and which labels at which confidence lead to review or block."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.parsing.bounded import at_most
from bastion.policy import taxonomy

Action = Literal["allow", "review", "block"]

POLICY_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
# Bounds on what one policy or word/domain list may hold, so that validating it and
# compiling its lists (one pattern per word) stay cheap whatever a tenant sends.
MAX_POLICY_RULES = 500
MAX_CATEGORIES = 200
MAX_ANALYZERS = 64
MAX_LIST_ENTRIES = 10_000
MAX_WORD_CHARS = 200
MAX_DOMAIN_CHARS = 253

Word = Annotated[str, Field(max_length=MAX_WORD_CHARS)]
DomainName = Annotated[str, Field(max_length=MAX_DOMAIN_CHARS)]


class Rule(BaseModel):
    """Thresholds for one or more taxonomy categories; an L1 category covers its L2 labels."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, max_length=200, description="Rule name shown in reasons; defaults to categories."
    )
    categories: list[Annotated[str, Field(max_length=100)]] = Field(
        min_length=1,
        max_length=MAX_CATEGORIES,
        description="Taxonomy labels (L1 or L2) this rule covers, or '*' for all.",
    )
    review: float | None = Field(
        None, ge=0, le=100, description="Confidence at or above which the item goes to review."
    )
    block: float | None = Field(
        None, ge=0, le=100, description="Confidence at or above which the item is blocked."
    )

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and name not in taxonomy.CATEGORIES:
                raise ValueError(
                    f"unknown category {name!r}; known L1 categories: {', '.join(taxonomy.L1)}"
                )
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> Rule:
        if self.review is None and self.block is None:
            raise ValueError("a rule needs 'review' or 'block' (or both)")
        if self.review is not None and self.block is not None and self.review > self.block:
            raise ValueError(
                f"review threshold {self.review} is above block threshold {self.block}: "
                "the review action could never fire"
            )
        return self

    @property
    def display_name(self) -> str:
        return self.name or ",".join(self.categories)

    def covers(self, label: str, parent: str | None) -> bool:
        cats = self.categories
        return "*" in cats or label in cats or (parent is not None and parent in cats)


class Lists(BaseModel):
    """Word and domain lists that turn OCR text and code/URL payloads into labels."""

    model_config = ConfigDict(extra="forbid")

    blocked_words: Annotated[list[Word], at_most(MAX_LIST_ENTRIES)] = Field(
        default_factory=list,
        max_length=MAX_LIST_ENTRIES,
        description="Words or phrases; matched case-insensitively after Unicode NFKC folding "
        f"(at most {MAX_LIST_ENTRIES}, each at most {MAX_WORD_CHARS} characters).",
    )
    blocked_domains: Annotated[list[DomainName], at_most(MAX_LIST_ENTRIES)] = Field(
        default_factory=list,
        max_length=MAX_LIST_ENTRIES,
        description="Domains; a URL on the domain or any of its subdomains is blocked "
        f"(at most {MAX_LIST_ENTRIES}).",
    )
    allowed_domains: Annotated[list[DomainName], at_most(MAX_LIST_ENTRIES)] = Field(
        default_factory=list,
        max_length=MAX_LIST_ENTRIES,
        description="Domains never reported as blocked (wins over blocked; at most "
        f"{MAX_LIST_ENTRIES}).",
    )

    def merged(self, other: Lists) -> Lists:
        """Both lists' entries; not validated again (each side already was), so a policy's
        and a tenant's lists together may hold more than one list's bound."""

        def union(a: list[str], b: list[str]) -> list[str]:
            return list(dict.fromkeys([*a, *b]))

        return Lists.model_construct(
            blocked_words=union(self.blocked_words, other.blocked_words),
            blocked_domains=union(self.blocked_domains, other.blocked_domains),
            allowed_domains=union(self.allowed_domains, other.allowed_domains),
        )


LANGUAGE_CODE = r"^[a-z]{2,3}$"
"""An ISO 639-1 code (three letters for the few languages Whisper names so, e.g. ``haw``)."""


class SpeechOptions(BaseModel):
    """How the policy's speech analyzers listen: the spoken language, when it is known."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(
        None,
        pattern=LANGUAGE_CODE,
        description="The spoken language (ISO 639-1, e.g. 'es'): speech is transcribed in "
        "it rather than detected. A job's `language` option overrides it.",
    )
    languages: list[Annotated[str, Field(pattern=LANGUAGE_CODE)]] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="The languages speech may be in (ISO 639-1): the language is detected "
        "among these alone (Whisper base alone mistakes some languages for others, e.g. "
        "German for Yiddish). A job's `language` or `languages` option overrides it.",
    )


class Policy(BaseModel):
    """A named policy; the ``version`` is a hash of its content."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=POLICY_NAME, description="Policy name.")
    description: str = Field("", max_length=2000, description="What the policy is for.")
    analyzers: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1,
        max_length=MAX_ANALYZERS,
        description="Analyzer instance names to run, e.g. nsfw, labels, ocr.",
    )
    rules: Annotated[list[Rule], at_most(MAX_POLICY_RULES)] = Field(
        default_factory=list,
        max_length=MAX_POLICY_RULES,
        description=f"Thresholds → actions (at most {MAX_POLICY_RULES} rules).",
    )
    lists: Lists = Field(default_factory=Lists, description="Blocked words and domains.")
    max_frames: int | None = Field(
        None, ge=1, le=64, description="Frames of an animated image to analyse (default: limits)."
    )
    speech: SpeechOptions | None = Field(
        None,
        description="Audio and the sound of videos: the spoken language (default: detected).",
    )

    @field_validator("analyzers")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dup = {a for a in value if value.count(a) > 1}
        if dup:
            raise ValueError(f"analyzers listed twice: {sorted(dup)}")
        return value

    @property
    def version(self) -> str:
        # a policy without speech options hashes as it did before they existed
        content = self.model_dump(mode="json", exclude={"speech"} if self.speech is None else None)
        canon = json.dumps(content, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def categories(self) -> set[str]:
        out: set[str] = set()
        for rule in self.rules:
            for cat in rule.categories:
                if cat == "*":
                    continue
                out.add(cat)
        return out
