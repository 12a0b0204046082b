"""English scorer: alt-profanity-check's offensive-language model (scikit-learn).

A linear SVM over word n-grams trained on English tweets labelled offensive or not. Its
probability is high on much that is merely emphatic ("this game is so hard I want to
die" gets 0.71), so it is squeezed: ``score = sigmoid((p - 0.8) / 0.05)``. The score
counts as ``profanity``, and as ``insult`` too when the segment addresses someone
("you", "your"...): an insult is aimed at a person. It knows no other language and
misses threats without offensive words. The model (two
joblib files in the package) loads on first use, once per scorer.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from bastion.text.toxicity.result import Evidence
from bastion.text.toxicity.wordlists import language_code

MODEL_NAME = "alt-profanity-check"
CENTRE = 0.8
WIDTH = 0.05
MIN_SCORE = 0.01
"""Scores below this are not reported."""
_ADDRESS = re.compile(r"\b(you|your|yours|yourself|you're|youre|ya|u|ur)\b", re.IGNORECASE)


class EnglishModelScorer:
    """Profanity and insult probability of English segments."""

    def __init__(self) -> None:
        self._predict: Callable[[list[str]], Any] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def supports(language: str | None) -> bool:
        """Only English segments are scored."""
        return language_code(language) == "en"

    def _model(self) -> Callable[[list[str]], Any]:
        with self._lock:
            if self._predict is None:
                from profanity_check import predict_prob

                self._predict = predict_prob
            return self._predict

    def load(self) -> None:
        """Load the model now rather than on the first English segment."""
        self._model()

    def score_batch(
        self, texts: Sequence[str], languages: Sequence[str | None]
    ) -> list[list[Evidence]]:
        """Evidence per segment; empty for non-English segments and low probabilities."""
        out: list[list[Evidence]] = [[] for _ in texts]
        picked = [i for i, lang in enumerate(languages) if self.supports(lang)]
        if not picked:
            return out
        probs = self._model()([texts[i] for i in picked])
        for i, p in zip(picked, probs, strict=True):
            prob = float(p)
            score = round(1.0 / (1.0 + math.exp(-(prob - CENTRE) / WIDTH)), 4)
            if score < MIN_SCORE:
                continue
            detail = f"offensive-language model (English): p={prob:.2f}"
            found = [
                Evidence(scorer="english_model", category="profanity", score=score, detail=detail)
            ]
            if _ADDRESS.search(texts[i]):
                found.append(
                    Evidence(scorer="english_model", category="insult", score=score, detail=detail)
                )
            out[i] = found
        return out
