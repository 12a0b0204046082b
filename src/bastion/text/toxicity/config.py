"""Configuration of the toxicity scorers: which run, their thresholds and languages."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.text.toxicity.categories import CATEGORIES, ToxicityCategory

_DEFAULT_THRESHOLDS: dict[ToxicityCategory, float] = {c: 0.5 for c in CATEGORIES}


class ToxicityConfig(BaseModel):
    """Which toxicity scorers run and where a score becomes a taxonomy label."""

    model_config = ConfigDict(extra="forbid")

    word_lists: bool = Field(
        True,
        description="Match the segment against the word list of its own language "
        "(never all languages at once: a word that is innocent in one language is a swear "
        "word in another).",
    )
    english_model: bool = Field(
        True,
        description="Score English segments with the bundled scikit-learn offensive-language "
        "model (profanity and insult).",
    )
    embeddings: bool = Field(
        True,
        description="Score every segment, in any language, by sentence-embedding similarity "
        "to example sentences of each category (threats, harassment, hate or graphic "
        "descriptions without swear words).",
    )
    languages: list[str] | None = Field(
        None,
        description="ISO 639-1 codes whose word lists may be used; None means every "
        "language that has a list. A segment in another language gets no word-list score.",
    )
    ignore_words: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per ISO 639-1 code, words never to report from that language's list "
        "(added to Bastion's own list of mistranslated entries).",
    )
    extra_words: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per ISO 639-1 code, words to report as profanity on top of the list.",
    )
    thresholds: dict[ToxicityCategory, float] = Field(
        default_factory=lambda: dict(_DEFAULT_THRESHOLDS),
        description="Per category, the score (0–1) at or above which a taxonomy label is "
        "emitted; categories left out use 0.5.",
    )
    encoder_threads: int = Field(
        1, ge=1, le=64, description="BLAS threads of the sentence encoder."
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Segments embedded per encoder call.")

    @model_validator(mode="after")
    def _check(self) -> ToxicityConfig:
        for cat, value in self.thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold of {cat} must be within 0–1, not {value}")
        self.thresholds = {**_DEFAULT_THRESHOLDS, **self.thresholds}
        return self

    def threshold(self, category: ToxicityCategory) -> float:
        """The label threshold of one category."""
        return self.thresholds.get(category, 0.5)
