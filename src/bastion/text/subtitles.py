"""Subtitles of a transcript: SRT and WebVTT text from :class:`TranscriptSegment` s.

:func:`cues` cuts the transcript into cues a viewer can read: none longer than
``max_s`` seconds (7 by default) or ``max_chars`` characters (84: two lines of 42), cut
between words at the words' own times when the transcript has them (else the segment's
time is shared among its words by their length), in order of time and never
overlapping (a cue ends where the next begins at the latest). Each cue's text is
wrapped on at most a few lines of ``line_chars``.

:func:`to_srt` writes SubRip with the ``srt`` package (``HH:MM:SS,mmm`` times,
numbered cues). :func:`to_vtt` writes WebVTT itself: the format is a header line and
cues of a time line and text, too small for a dependency; what it must take care of
is done here: ``HH:MM:SS.mmm`` times and the cue text escaped (``&``, ``<``, ``>`` as
character references, so no tag and no ``-->`` can appear; blank lines, which would end
a cue, cannot either since the text is wrapped from single spaces).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import srt  # type: ignore[import-untyped]

from bastion.results import TranscriptSegment

__all__ = [
    "MAX_CUE_CHARS",
    "MAX_CUE_S",
    "Cue",
    "cues",
    "escape_vtt",
    "srt_time",
    "to_srt",
    "to_vtt",
    "vtt_time",
]

MAX_CUE_S = 7.0
"""Longest cue, in seconds."""
MAX_CUE_CHARS = 84
"""Most characters in one cue (two lines of 42)."""
LINE_CHARS = 42
"""Most characters on one line of a cue (a word longer than that stays whole)."""
_UNSPACED = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})
"""Languages written without spaces between words (Whisper's words then join as they are)."""


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle: shown from ``start_s`` to ``end_s`` (seconds into the media)."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class _Word:
    start_s: float
    end_s: float
    text: str


def _millis(seconds: float) -> tuple[int, int, int, int]:
    total = max(0, round(seconds * 1000))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return hours, minutes, secs, millis


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` (SubRip); hours grow past two digits when they must."""
    h, m, s, ms = _millis(seconds)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (WebVTT); hours grow past two digits when they must."""
    h, m, s, ms = _millis(seconds)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def escape_vtt(text: str) -> str:
    """Cue text as WebVTT reads it literally: ``&``, ``<`` and ``>`` as references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _words(segment: TranscriptSegment) -> list[_Word]:
    """The segment's words with times: its own, else its time shared by their lengths."""
    timed = [
        _Word(w.start_s, max(w.end_s, w.start_s), " ".join(w.text.split()))
        for w in segment.words
        if w.text.strip()
    ]
    if timed:
        return timed
    texts = segment.text.split()
    span = max(segment.end_s - segment.start_s, 0.0)
    total = sum(len(t) for t in texts) or 1
    out, at = [], segment.start_s
    for text in texts:
        length = span * len(text) / total
        out.append(_Word(at, at + length, text))
        at += length
    return out


def _join(words: Sequence[_Word], language: str | None) -> str:
    joiner = "" if language in _UNSPACED else " "
    return joiner.join(w.text for w in words)


def _split(
    segment: TranscriptSegment, max_s: float, max_chars: int
) -> Iterable[tuple[float, float, str]]:
    words = _words(segment)
    if not words:
        return
    run: list[_Word] = []
    for word in words:
        if run:
            longer = word.end_s - run[0].start_s > max_s
            wider = len(_join([*run, word], segment.language)) > max_chars
            if longer or wider:
                yield run[0].start_s, run[-1].end_s, _join(run, segment.language)
                run = []
        run.append(word)
    yield run[0].start_s, run[-1].end_s, _join(run, segment.language)


def _wrap(text: str, line_chars: int) -> str:
    lines = textwrap.wrap(text, width=line_chars, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines) or text


def cues(
    segments: Iterable[TranscriptSegment],
    *,
    max_s: float = MAX_CUE_S,
    max_chars: int = MAX_CUE_CHARS,
    line_chars: int = LINE_CHARS,
) -> list[Cue]:
    """The transcript as cues of at most ``max_s`` seconds and ``max_chars`` characters,
    in order of time and not overlapping; a segment without text gives none."""
    if max_s <= 0 or max_chars < 1 or line_chars < 1:
        raise ValueError("max_s, max_chars and line_chars must be positive")
    pieces = sorted(
        (piece for seg in segments for piece in _split(seg, max_s, max_chars)),
        key=lambda p: (p[0], p[1]),
    )
    out: list[Cue] = []
    for i, (start, end, text) in enumerate(pieces):
        if out:
            start = max(start, out[-1].end_s)
        if i + 1 < len(pieces):
            end = min(end, max(pieces[i + 1][0], start))
        end = round(max(end, start), 3)
        start = round(start, 3)
        if end <= start:  # a word said in no time, or hidden by the next one
            if not out:
                continue
            last = out[-1]
            out[-1] = Cue(last.start_s, last.end_s, f"{last.text} {text}")
            continue
        out.append(Cue(start, end, text))
    return [Cue(c.start_s, c.end_s, _wrap(c.text, line_chars)) for c in out]


def to_srt(segments: Iterable[TranscriptSegment]) -> str:
    """The transcript as SubRip text (empty when nothing was said)."""
    subtitles = [
        srt.Subtitle(
            index=i,
            start=timedelta(seconds=cue.start_s),
            end=timedelta(seconds=cue.end_s),
            content=cue.text,
        )
        for i, cue in enumerate(cues(segments), start=1)
    ]
    text: str = srt.compose(subtitles)
    return text


def to_vtt(segments: Iterable[TranscriptSegment]) -> str:
    """The transcript as WebVTT text (the header alone when nothing was said)."""
    parts = ["WEBVTT", ""]
    for cue in cues(segments):
        parts += [f"{vtt_time(cue.start_s)} --> {vtt_time(cue.end_s)}", escape_vtt(cue.text), ""]
    return "\n".join(parts)
