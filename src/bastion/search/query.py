"""A user's search text made safe: the words to look for, and snippets that show them.

A query is never handed to a database's query language as written. It is split into
terms, runs of letters, marks and digits (Unicode categories L, M and N, so Thai vowel
signs and Devanagari marks stay inside their words); everything else — quotes, ``*``,
``-``, parentheses, ``:``, ``^``, NUL and other control characters — only separates
terms. Words such as ``NEAR``, ``AND`` or ``OR`` are ordinary terms. Each database layer
then quotes the terms (FTS5 phrases, ``plainto_tsquery``, escaped ``LIKE`` patterns),
so no query can change the shape of the SQL or fail inside the database.

:func:`snippet` cuts a window of the document's text around the first match and gives
the character ranges of every match inside it, for the caller to highlight (the text
itself is returned unmarked: whoever renders it escapes it and wraps the ranges).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bastion.search.errors import InvalidSearchQuery

MAX_QUERY_CHARS = 1000
"""Longest query accepted, in characters (after Unicode normalisation)."""
MAX_TERMS = 32
"""Most terms one query may have."""
SNIPPET_CHARS = 160
"""About how many characters of text a snippet shows."""
ELLIPSIS = "…"


def _is_term_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LMN"


def terms(query: str) -> list[str]:
    """The distinct terms of ``query``, lowercased, in order.

    Raises :class:`~bastion.search.errors.InvalidSearchQuery` for a query longer than
    :data:`MAX_QUERY_CHARS`, with no term, or with more than :data:`MAX_TERMS`.
    """
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidSearchQuery(
            f"the search query is longer than {MAX_QUERY_CHARS} characters",
            details={"max_chars": MAX_QUERY_CHARS},
        )
    text = unicodedata.normalize("NFKC", query)
    found: list[str] = []
    current: list[str] = []
    for ch in [*text, " "]:
        if _is_term_char(ch):
            current.append(ch)
        elif current:
            term = "".join(current).lower()
            current = []
            if term not in found:
                found.append(term)
    if not found:
        raise InvalidSearchQuery("the search query has no words to search for")
    if len(found) > MAX_TERMS:
        raise InvalidSearchQuery(
            f"the search query has more than {MAX_TERMS} words",
            details={"max_terms": MAX_TERMS},
        )
    return found


def like_pattern(term: str) -> str:
    """``%term%`` with ``\\``, ``%`` and ``_`` escaped (use with ``ESCAPE '\\'``)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class Snippet:
    """A window of a document's text and where the query's terms are in it."""

    text: str
    highlights: tuple[tuple[int, int], ...]
    """``(start, end)`` character offsets into :attr:`text`, sorted, not overlapping."""

    def marked(self, before: str = "[", after: str = "]") -> str:
        """The text with each highlight wrapped in ``before`` / ``after`` (no escaping:
        for plain-text output; HTML renders escape the parts first)."""
        out: list[str] = []
        pos = 0
        for start, end in self.highlights:
            out += [self.text[pos:start], before, self.text[start:end], after]
            pos = end
        out.append(self.text[pos:])
        return "".join(out)


def _spans(text: str, words: list[str]) -> list[tuple[int, int]]:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few letters change length when lowered
        lowered = text
    spans: list[tuple[int, int]] = []
    for word in words:
        start = lowered.find(word)
        while start >= 0:
            spans.append((start, start + len(word)))
            start = lowered.find(word, start + len(word))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def snippet(text: str, words: list[str], *, width: int = SNIPPET_CHARS) -> Snippet:
    """About ``width`` characters of ``text`` around the first of ``words`` found in it
    (case-insensitive), with the ranges of every match in the window."""
    text = unicodedata.normalize("NFKC", text)
    spans = _spans(text, words)
    first = spans[0][0] if spans else 0
    start = max(0, min(first - width // 4, len(text) - width))
    end = min(len(text), start + width)
    prefix = ELLIPSIS if start > 0 else ""
    suffix = ELLIPSIS if end < len(text) else ""
    shift = len(prefix) - start
    inside = tuple(
        (max(s, start) + shift, min(e, end) + shift) for s, e in spans if s < end and e > start
    )
    return Snippet(prefix + text[start:end] + suffix, inside)
