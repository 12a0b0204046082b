"""Policy: which analyzers run and which labels at which confidence lead to review or block."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.policy import taxonomy

Action = Literal["allow", "review", "block"]


class Rule(BaseModel):
    """Thresholds for one or more taxonomy categories; an L1 category covers its L2 labels."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, description="Rule name shown in reasons; defaults to categories."
    )
    categories: list[str] = Field(
        min_length=1, description="Taxonomy labels (L1 or L2) this rule covers, or '*' for all."
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

    blocked_words: list[str] = Field(
        default_factory=list,
        description="Words or phrases; matched case-insensitively after Unicode NFKC folding.",
    )
    blocked_domains: list[str] = Field(
        default_factory=list,
        description="Domains; a URL on the domain or any of its subdomains is blocked.",
    )
    allowed_domains: list[str] = Field(
        default_factory=list, description="Domains never reported as blocked (wins over blocked)."
    )

    def merged(self, other: Lists) -> Lists:
        def union(a: list[str], b: list[str]) -> list[str]:
            return list(dict.fromkeys([*a, *b]))

        return Lists(
            blocked_words=union(self.blocked_words, other.blocked_words),
            blocked_domains=union(self.blocked_domains, other.blocked_domains),
            allowed_domains=union(self.allowed_domains, other.allowed_domains),
        )


class Policy(BaseModel):
    """A named policy; the ``version`` is a hash of its content."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="Policy name.")
    description: str = Field("", description="What the policy is for.")
    analyzers: list[str] = Field(
        min_length=1, description="Analyzer instance names to run, e.g. nsfw, labels, ocr."
    )
    rules: list[Rule] = Field(default_factory=list, description="Thresholds → actions.")
    lists: Lists = Field(default_factory=Lists, description="Blocked words and domains.")
    max_frames: int | None = Field(
        None, ge=1, le=64, description="Frames of an animated image to analyse (default: limits)."
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
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def categories(self) -> set[str]:
        out: set[str] = set()
        for rule in self.rules:
            for cat in rule.categories:
                if cat == "*":
                    continue
                out.add(cat)
        return out
