"""Decoded live frames against the reader's size limits, before they are converted.

The conversion to RGB itself (square pixels, scaled down, upright) is the media layer's
(:func:`bastion.media.frames.to_rgb`), shared with recorded videos.
"""

from __future__ import annotations

from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.failures import StreamFailure

__all__ = ["check_size"]


def check_size(width: int, height: int, config: StreamReaderConfig) -> None:
    """Refuse frames over the configured side or pixel limit (permanent ``video_too_large``)."""
    if max(width, height) > config.max_source_side or width * height > config.max_source_pixels:
        raise StreamFailure(
            f"the stream's frames are {width}×{height}; at most {config.max_source_side} px a "
            f"side and {config.max_source_pixels} pixels are accepted",
            code="video_too_large",
            permanent=True,
        )
