"""Word and character error rates of a transcript against what was said.

Both texts are normalised first (Unicode NFKC, case folded, punctuation dropped,
katakana read as hiragana, spaces collapsed) so that only the words count.
:func:`error_rate` picks the measure a language is judged by: characters for languages
written without spaces between words (Chinese, Japanese, Thai), words otherwise.
"""

from __future__ import annotations

import unicodedata

import jiwer

# languages written without spaces between words: judged by character error rate
CHARACTER_LANGUAGES = frozenset({"zh", "ja", "th"})

_KATAKANA = range(0x30A1, 0x30F7)  # ァ..ヶ
_TO_HIRAGANA = -0x60


def normalize(text: str) -> str:
    """``text`` without case, punctuation or symbols, katakana as hiragana, one space
    between words."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "PS":
            kept.append(" ")
        elif ord(char) in _KATAKANA:
            kept.append(chr(ord(char) + _TO_HIRAGANA))
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits (substitutions, deletions, insertions) per reference word."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or " "))


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Character edits per reference character, spaces ignored."""
    ref = normalize(reference).replace(" ", "")
    hyp = normalize(hypothesis).replace(" ", "")
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.cer(ref, hyp or " "))


def error_rate(language: str, reference: str, hypothesis: str) -> float:
    """The error rate ``language`` is judged by: characters for Chinese, Japanese and
    Thai, words for the others."""
    if language in CHARACTER_LANGUAGES:
        return character_error_rate(reference, hypothesis)
    return word_error_rate(reference, hypothesis)
