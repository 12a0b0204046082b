"""Word and domain lists: turn OCR text and URLs from codes or text into Illegal Ads labels.

Lists come from tenants and are bounded by :class:`~bastion.policy.model.Lists` (at
most ``MAX_LIST_ENTRIES`` entries of at most ``MAX_WORD_CHARS`` characters). Matching
stays cheap for the largest lists: a word is first looked for as a plain substring (C
speed), and only a word found that way is checked for word boundaries, with a pattern
of the escaped word (a literal: no backtracking) compiled on first use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import urlsplit

from bastion.policy import taxonomy
from bastion.policy.model import Lists
from bastion.results import Code, Label, TextLine

ANALYZER = "lists"
MODEL = "policy-lists"


def fold(text: str) -> str:
    """Unicode NFKC + casefold, so full-width and case variants match."""
    return unicodedata.normalize("NFKC", text).casefold()


def _domain_matches(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


@lru_cache(maxsize=4096)
def _whole_word(folded: str) -> re.Pattern[str]:
    """``folded`` as a whole word: not preceded or followed by a word character."""
    return re.compile(r"(?<!\w)" + re.escape(folded) + r"(?!\w)")


@dataclass(frozen=True, slots=True)
class _Word:
    word: str  # as listed
    folded: str
    whole: bool  # whole words only (scripts with spaces); else a substring (CJK, Thai)


@dataclass(frozen=True)
class CompiledLists:
    """Lists prepared once per policy (folded here, not per request)."""

    lists: Lists
    version: str

    @cached_property
    def _words(self) -> list[_Word]:
        out = []
        for word in self.lists.blocked_words:
            w = fold(word).strip()
            if not w:
                continue
            # word boundaries for scripts with spaces; plain substring for CJK/Thai
            whole = re.fullmatch(r"[\w\s'.-]+", w, flags=re.ASCII) is not None
            out.append(_Word(word, w, whole))
        return out

    @cached_property
    def _blocked(self) -> list[str]:
        return [fold(d).strip().strip(".") for d in self.lists.blocked_domains if d.strip()]

    @cached_property
    def _allowed(self) -> list[str]:
        return [fold(d).strip().strip(".") for d in self.lists.allowed_domains if d.strip()]

    def blocked_domain(self, url: str) -> str | None:
        host = (urlsplit(url).hostname or "").strip(".")
        if not host or any(_domain_matches(host, d) for d in self._allowed):
            return None
        return next((d for d in self._blocked if _domain_matches(host, d)), None)

    def blocked_words(self, text: str) -> list[str]:
        folded = fold(text)
        squeezed = re.sub(r"\s+", "", folded)
        hits = []
        for entry in self._words:
            w = entry.folded
            if entry.whole:
                if w in folded and _whole_word(w).search(folded) is not None:
                    hits.append(entry.word)
            elif w in folded or w in squeezed:
                hits.append(entry.word)
        return hits

    def labels(
        self, text: Iterable[TextLine], codes: Iterable[Code], urls: Iterable[str]
    ) -> list[Label]:
        out: list[Label] = []
        seen: set[tuple[str, str]] = set()

        def add(name: str, confidence: float, source: str, frame: int | None) -> None:
            if (name, source) in seen:
                return
            seen.add((name, source))
            out.append(
                taxonomy.label(
                    name,
                    confidence,
                    analyzer=ANALYZER,
                    model=MODEL,
                    version=self.version,
                    source=source,
                    frame=frame,
                )
            )

        for line in text:
            for word in self.blocked_words(line.text):
                add("Blocked Word", line.confidence, f"text:{word}", line.frame)
        for code in codes:
            for word in self.blocked_words(code.text):
                add("Blocked Word", 100.0, f"code:{word}", code.frame)
        for url in urls:
            dom = self.blocked_domain(url)
            if dom:
                add("Blocked Domain", 100.0, f"url:{url}", None)
        return out
