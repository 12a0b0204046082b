"""A stream's counters as its row keeps them (JSON) and the streams API serves them.

The count of analyzed frames is ``frames_analyzed``. Its former key, ``frames_analysed``,
is written and served beside it with the same value for one release, and a row that
only has the former key (written by an earlier version) reads as if it had both: every
writer and reader of a row's counters goes through :func:`stream_counters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FRAMES_ANALYZED", "FRAMES_ANALYZED_FORMER", "stream_counters"]

FRAMES_ANALYZED: Final = "frames_analyzed"
FRAMES_ANALYZED_FORMER: Final = "frames_analysed"
"""The former key of :data:`FRAMES_ANALYZED`, still served for one release."""


def stream_counters(counters: Mapping[str, Any] | None) -> dict[str, int]:
    """``counters`` as integers, with :data:`FRAMES_ANALYZED` and its former key both set.

    The new key wins when both are there; a row with only the former key gets the new
    one with its value; a row with neither gets neither.
    """
    out = {key: int(value) for key, value in (counters or {}).items()}
    count = out.get(FRAMES_ANALYZED, out.get(FRAMES_ANALYZED_FORMER))
    if count is not None:
        out[FRAMES_ANALYZED] = out[FRAMES_ANALYZED_FORMER] = count
    return out
