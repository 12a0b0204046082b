"""Subtitles of a transcript (text/subtitles.py): times, cue splitting, escaping, and
SRT that the ``srt`` package reads back."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
import srt  # type: ignore[import-untyped]

from bastion.results import TranscriptSegment, TranscriptWord
from bastion.text.subtitles import cues, escape_vtt, srt_time, to_srt, to_vtt, vtt_time


def segment(
    start: float, end: float, text: str, *, timed: bool = True, language: str = "en"
) -> TranscriptSegment:
    """A segment whose words (when ``timed``) share its time evenly."""
    said = text.split()
    step = (end - start) / max(len(said), 1)
    words = [
        TranscriptWord(
            start_s=round(start + i * step, 3),
            end_s=round(start + (i + 1) * step, 3),
            text=w,
            probability=0.9,
        )
        for i, w in enumerate(said)
    ]
    return TranscriptSegment(
        start_s=start,
        end_s=end,
        text=text,
        language=language,
        confidence=80.0,
        analyzer="speech",
        words=words if timed else [],
    )


@pytest.mark.parametrize(
    ("seconds", "srt_text", "vtt_text"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.5, "00:00:01,500", "00:00:01.500"),
        (61.0004, "00:01:01,000", "00:01:01.000"),
        (3599.9996, "01:00:00,000", "01:00:00.000"),
        (3723.042, "01:02:03,042", "01:02:03.042"),
        (360_000.0, "100:00:00,000", "100:00:00.000"),
        (-0.2, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_times(seconds: float, srt_text: str, vtt_text: str) -> None:
    assert srt_time(seconds) == srt_text
    assert vtt_time(seconds) == vtt_text


def test_escaping_leaves_no_tag_nor_arrow() -> None:
    assert escape_vtt("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert escape_vtt("<b>x</b> --> &amp;") == "&lt;b&gt;x&lt;/b&gt; --&gt; &amp;amp;"


def test_a_short_segment_is_one_cue_with_its_own_text() -> None:
    (cue,) = cues([segment(1.2, 3.4, "Hello there, friends.")])
    assert (cue.start_s, cue.end_s, cue.text) == (1.2, 3.4, "Hello there, friends.")


def test_a_long_segment_is_cut_between_words_at_their_times() -> None:
    text = " ".join(f"word{i}" for i in range(30))  # 30 words over 21 s: 0.7 s each
    out = cues([segment(0.0, 21.0, text)])
    assert len(out) >= 3
    assert all(c.end_s - c.start_s <= 7.0 for c in out)
    assert " ".join(c.text.replace("\n", " ") for c in out) == text
    # each cut falls where a word starts
    starts = {round(i * 0.7, 3) for i in range(30)}
    assert all(c.start_s in starts for c in out), out
    assert out[0].start_s == 0.0 and out[-1].end_s == 21.0


def test_a_wide_segment_is_cut_at_the_character_limit_and_wrapped() -> None:
    text = " ".join(["subtitles"] * 40)  # 399 characters said in 6 s
    out = cues([segment(0.0, 6.0, text)])
    assert len(out) >= 5
    for cue in out:
        assert len(cue.text.replace("\n", " ")) <= 84
        assert all(len(line) <= 42 for line in cue.text.split("\n"))
        assert len(cue.text.split("\n")) <= 2
    assert " ".join(c.text.replace("\n", " ") for c in out) == text


def test_without_word_times_the_segment_time_is_shared_by_length() -> None:
    text = " ".join(["aaaa"] * 20)  # 20 equal words over 20 s
    out = cues([segment(10.0, 30.0, text, timed=False)])
    assert all(c.end_s - c.start_s <= 7.0 for c in out)
    assert out[0].start_s == 10.0 and out[-1].end_s == 30.0
    assert out[1].start_s == pytest.approx(17.0)  # 7 words of 1 s each in the first


def test_cues_are_ordered_and_never_overlap() -> None:
    out = cues(
        [
            segment(5.0, 8.0, "second one"),
            segment(0.5, 5.6, "first one runs into the second"),
            segment(8.0, 8.0, "instant"),
            segment(9.0, 9.5, "   "),
        ]
    )
    assert [c.text for c in out][:2] == ["first one runs into the second", "second one instant"]
    for cue, after in itertools.pairwise(out):
        assert cue.start_s < cue.end_s <= after.start_s
    assert out[-1].start_s < out[-1].end_s


def test_languages_without_spaces_join_their_words_as_written() -> None:
    seg = segment(0.0, 2.0, "今日 は 晴れ", language="ja").model_copy(update={"text": "今日は晴れ"})
    out = cues([seg], max_chars=2)
    assert [c.text for c in out] == ["今日", "は", "晴れ"]


def test_srt_reads_back() -> None:
    text = to_srt([segment(1.0, 2.5, "Hello <world> & you"), segment(3.0, 4.0, "Bye.")])
    parsed = list(srt.parse(text))
    assert [(p.index, p.start, p.end, p.content) for p in parsed] == [
        (1, timedelta(seconds=1), timedelta(seconds=2.5), "Hello <world> & you"),
        (2, timedelta(seconds=3), timedelta(seconds=4), "Bye."),
    ]
    assert "00:00:01,000 --> 00:00:02,500" in text
    assert to_srt([]) == ""


def test_vtt_has_its_header_times_and_escaped_text() -> None:
    text = to_vtt([segment(1.0, 2.5, "a --> b <i>c</i> & d"), segment(62.0, 63.25, "Bye.")])
    assert text == (
        "WEBVTT\n\n"
        "00:00:01.000 --> 00:00:02.500\n"
        "a --&gt; b &lt;i&gt;c&lt;/i&gt; &amp; d\n\n"
        "00:01:02.000 --> 00:01:03.250\n"
        "Bye.\n"
    )
    assert to_vtt([]) == "WEBVTT\n"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        cues([], max_s=0)
