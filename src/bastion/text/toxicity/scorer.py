"""The combiner: runs the scorers that apply to each segment and keeps, per category,
the highest score, with every scorer's evidence so a moderator sees why.

The maximum is used because the scorers see different things (a swear word, an
offensive English phrasing, a threat without swear words): any one of them being sure
is enough. Everything here blocks (model loads, CPU work); callers in async code run it
in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.models.sentence_encoder import SentenceEncoder
from bastion.text.toxicity.categories import CATEGORIES
from bastion.text.toxicity.config import ToxicityConfig
from bastion.text.toxicity.embeddings import EmbeddingScorer
from bastion.text.toxicity.english_model import EnglishModelScorer
from bastion.text.toxicity.result import Evidence, ScorerName, ToxicityResult
from bastion.text.toxicity.wordlists import WordListScorer, language_code


class ToxicityScorer:
    """Scores text segments into the seven toxicity categories (0–1 each).

    Keep one instance and reuse it: the models load once, on first use or :meth:`load`.
    """

    def __init__(
        self, config: ToxicityConfig | None = None, *, encoder: SentenceEncoder | None = None
    ) -> None:
        """``encoder``: the process's shared sentence encoder (None: one of its own)."""
        self.config = config or ToxicityConfig()
        self._words = WordListScorer(self.config)
        self._english = EnglishModelScorer()
        self._embeddings = EmbeddingScorer(
            threads=self.config.encoder_threads,
            batch_size=self.config.batch_size,
            encoder=encoder,
        )

    def load(self) -> None:
        """Load every enabled model now (a second or two) instead of on first use."""
        if self.config.english_model:
            self._english.load()
        if self.config.embeddings:
            self._embeddings.load()

    def score(self, text: str, language: str | None = None) -> ToxicityResult:
        """Score one segment; ``language`` is its ISO 639-1 code, or None if unknown."""
        return self.score_batch([text], [language])[0]

    def score_batch(
        self, texts: Sequence[str], languages: Sequence[str | None] | None = None
    ) -> list[ToxicityResult]:
        """Score many segments at once (the encoder batches them)."""
        langs: list[str | None] = list(languages) if languages is not None else [None] * len(texts)
        if len(langs) != len(texts):
            raise ValueError("texts and languages differ in length")
        evidence: list[list[Evidence]] = [[] for _ in texts]
        ran: list[list[ScorerName]] = [[] for _ in texts]
        notes: list[list[str]] = [[] for _ in texts]
        if self.config.word_lists:
            for i, found in enumerate(self._words.score_batch(texts, langs)):
                if self._words.supports(langs[i]):
                    ran[i].append("word_list")
                    evidence[i].extend(found)
                else:
                    notes[i].append(_no_list_note(langs[i]))
        if self.config.english_model:
            for i, found in enumerate(self._english.score_batch(texts, langs)):
                if self._english.supports(langs[i]):
                    ran[i].append("english_model")
                    evidence[i].extend(found)
        if self.config.embeddings and texts:
            for i, found in enumerate(self._embeddings.score_batch(texts)):
                ran[i].append("embeddings")
                evidence[i].extend(found)
        return [
            ToxicityResult(
                language=langs[i],
                scores={
                    c: max((e.score for e in evidence[i] if e.category == c), default=0.0)
                    for c in CATEGORIES
                },
                evidence=evidence[i],
                scorers=ran[i],
                notes=notes[i],
            )
            for i in range(len(texts))
        ]


def _no_list_note(language: str | None) -> str:
    code = language_code(language)
    if code is None:
        return "no word-list score: the language is unknown"
    return f"no word-list score: no word list for language {code!r} (or not enabled)"
