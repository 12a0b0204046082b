"""Decoded live frames to what analyzers take: size checks and RGB, scaled down, upright."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from av.video.frame import VideoFrame

from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.failures import StreamFailure

__all__ = ["check_size", "to_rgb"]


def check_size(width: int, height: int, config: StreamReaderConfig) -> None:
    """Refuse frames over the configured side or pixel limit (permanent ``video_too_large``)."""
    if max(width, height) > config.max_source_side or width * height > config.max_source_pixels:
        raise StreamFailure(
            f"the stream's frames are {width}×{height}; at most {config.max_source_side} px a "
            f"side and {config.max_source_pixels} pixels are accepted",
            code="video_too_large",
            permanent=True,
        )


def to_rgb(frame: VideoFrame, max_side: int, sample_aspect: Fraction | None = None) -> np.ndarray:
    """RGB uint8 (read-only), square pixels, longest side at most ``max_side``, rotation applied."""
    width, height = frame.width, frame.height
    if sample_aspect is not None and sample_aspect > 0 and sample_aspect != 1:
        width = max(1, round(width * sample_aspect))
    scale = min(1.0, max_side / max(width, height))
    width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if (width, height) == (frame.width, frame.height):
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
    turns = round(frame.rotation / 90) % 4
    if turns:
        rgb = np.rot90(rgb, turns)
    out = np.ascontiguousarray(rgb, dtype=np.uint8)
    out.setflags(write=False)
    return out
