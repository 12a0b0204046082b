"""What a toxicity scorer says about a segment, and why."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.text.toxicity.categories import CATEGORIES, ToxicityCategory

ScorerName = Literal["word_list", "english_model", "embeddings"]


class Evidence(BaseModel):
    """One scorer's score for one category of a segment, with what it rests on."""

    model_config = ConfigDict(extra="forbid")

    scorer: ScorerName = Field(description="The scorer that produced this score.")
    category: ToxicityCategory = Field(description="The toxicity category scored.")
    score: float = Field(ge=0, le=1, description="Score 0–1.")
    detail: str = Field(description="Why, for a moderator: matched words or nearest example.")
    words: list[str] = Field(
        default_factory=list, description="Word-list entries found in the segment."
    )


class ToxicityResult(BaseModel):
    """The combined toxicity of one segment: a score per category and the evidence."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(description="The segment's ISO 639-1 code, if known.")
    scores: dict[ToxicityCategory, float] = Field(
        description="Per category, the highest score of the scorers that apply (0–1)."
    )
    evidence: list[Evidence] = Field(
        default_factory=list, description="Every non-zero score of every scorer."
    )
    scorers: list[ScorerName] = Field(
        default_factory=list, description="The scorers that ran on this segment."
    )
    notes: list[str] = Field(
        default_factory=list,
        description="What was not checked and why, e.g. no word list for the language.",
    )

    def top(self, category: ToxicityCategory) -> Evidence | None:
        """The evidence behind a category's score (the highest-scoring scorer), if any."""
        found = [e for e in self.evidence if e.category == category]
        return max(found, key=lambda e: e.score) if found else None

    def above(self, thresholds: dict[ToxicityCategory, float]) -> list[ToxicityCategory]:
        """The categories whose score reaches their threshold, in category order."""
        return [c for c in CATEGORIES if self.scores.get(c, 0.0) >= thresholds.get(c, 0.5)]
