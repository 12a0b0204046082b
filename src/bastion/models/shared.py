"""Models more than one part of a process uses, made once per engine on first use.

The multilingual sentence encoder is read by the ``toxicity`` analyzer (its zero-shot
categories) and by search (transcripts, text read and tags embedded for semantic
search); one instance per process keeps its weights in memory once. The holder lives on
the engine's :class:`~bastion.analyzers.base.RuntimeContext`, not in a module global, so
two engines in one process (tests) stay apart.
"""

from __future__ import annotations

import threading

from bastion.models.sentence_encoder import SentenceEncoder


class SharedModels:
    """The models an engine's parts share; each made on first request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._encoder: SentenceEncoder | None = None

    def sentence_encoder(self, *, threads: int = 1, batch_size: int = 32) -> SentenceEncoder:
        """The one sentence encoder (the first caller's ``threads`` and ``batch_size``
        make it; its weights load on its first use)."""
        with self._lock:
            if self._encoder is None:
                self._encoder = SentenceEncoder(threads=threads, batch_size=batch_size)
            return self._encoder
