"""Decoded video frames to what analyzers take: RGB with square pixels, scaled down, upright.

Recorded videos (:mod:`bastion.media.video`) and live streams (:mod:`bastion.live.reading`)
decode with PyAV and convert every frame they keep here, so a frame looks the same to the
analyzers whichever way it came. Size limits are the callers': each checks a frame against
its own limits, and reports its own error, before converting it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from av.video.frame import VideoFrame

__all__ = ["quarter_turns", "to_rgb"]


def quarter_turns(frame: VideoFrame) -> int:
    """How many quarter turns (0–3, counter-clockwise, as :func:`numpy.rot90` turns) make
    the frame upright, from its display matrix."""
    return round(frame.rotation / 90) % 4


def to_rgb(frame: VideoFrame, max_side: int, sample_aspect: Fraction | None = None) -> np.ndarray:
    """RGB uint8 (read-only), upright, with square pixels and the longest side at most
    ``max_side`` (frames are scaled down, never up).

    ``sample_aspect`` is the stream's sample (pixel) aspect ratio: a frame whose pixels are
    not square is stretched to its display width. ``None``, zero or negative: square pixels.
    """
    width, height = frame.width, frame.height
    if sample_aspect is not None and sample_aspect > 0 and sample_aspect != 1:
        width = max(1, round(width * sample_aspect))
    scale = min(1.0, max_side / max(width, height))
    width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if (width, height) == (frame.width, frame.height):
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
    turns = quarter_turns(frame)
    if turns:
        rgb = np.rot90(rgb, turns)
    out = np.ascontiguousarray(rgb, dtype=np.uint8)
    out.setflags(write=False)
    return out
