"""Which sampled video frames reuse the analysis of the last analysed frame.

A video often shows the same picture for seconds (a slide, a static shot, a paused
game): running every model again on each sampled frame of it costs time and tells
nothing new. :class:`UnchangedFrames` looks at the frames in the order they are sampled,
in the decoding thread, and says for each one whether it is unchanged from the last
*analysed* frame; an unchanged frame then carries that frame's analysis with its own
time (see :func:`bastion.pipeline.video.moderate_video`).

"Unchanged" is judged conservatively on the frame area-averaged to
:data:`~bastion.media.hashing.SIMILARITY_SIDE` (as live streams' similarity skip does):
its 64-bit dHash (:func:`~bastion.media.hashing.dhash`) within a few bits of the
analysed frame's, and a coarse grey picture (:func:`~bastion.media.hashing.grey_grid`)
of which no cell moved by more than a few grey levels. The hash alone misses small
changes: a line of text or a QR code that appears on a still scene may not flip one of
its 64 bits, but moves the cells it covers by tens of levels. The reference moves only
when a frame is analysed, so a slow drift adds up until it is analysed, and a frame
``max_reuse_s`` after the last analysed one is analysed whatever it looks like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from bastion.media.hashing import SIMILARITY_SIDE, dhash, grey_grid, hamming, scaled_down
from bastion.media.types import Frame
from bastion.media.video_config import FrameReuse

__all__ = ["Glance", "UnchangedFrames", "glance"]


@dataclass(frozen=True, slots=True)
class Glance:
    """What a frame is compared by: its dHash, its coarse grey picture and its size."""

    dhash: str
    grid: np.ndarray
    shape: tuple[int, int]

    def differs(self, other: Glance, settings: FrameReuse) -> bool:
        """True when ``other`` is not close enough to this frame to reuse its analysis."""
        if self.shape != other.shape or self.grid.shape != other.grid.shape:
            return True
        if hamming(self.dhash, other.dhash) > settings.max_hash_distance:
            return True
        return float(np.max(np.abs(self.grid - other.grid))) > settings.max_cell_difference


def glance(rgb: np.ndarray, grid: int) -> Glance:
    """The :class:`Glance` of an RGB frame (area-averaged down first, so it stays cheap)."""
    import cv2

    small = scaled_down(rgb, SIMILARITY_SIDE)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return Glance(dhash(gray), grey_grid(gray, grid), (int(rgb.shape[0]), int(rgb.shape[1])))


class UnchangedFrames:
    """Tells, frame after frame in sampling order, which one reuses an earlier analysis.

    Not thread-safe: one video's frames are checked in its one decoding thread.
    """

    def __init__(self, settings: FrameReuse) -> None:
        self.settings = settings
        self.seconds = 0.0  # time spent comparing frames, for the result's timings
        self._reference: Glance | None = None
        self._reference_index = 0
        self._reference_ms = 0

    def check(self, frame: Frame) -> int | None:
        """The index of the analysed frame whose analysis ``frame`` reuses, or None:
        ``frame`` is to be analysed, and becomes the reference for the next ones."""
        started = time.perf_counter()
        try:
            seen = glance(frame.rgb, self.settings.grid)
            reference = self._reference
            stamp = frame.timestamp_ms
            if (
                reference is not None
                and stamp is not None
                and 0 <= stamp - self._reference_ms <= self.settings.max_reuse_s * 1000
                and not reference.differs(seen, self.settings)
            ):
                return self._reference_index
            self._reference = seen
            self._reference_index = frame.index
            self._reference_ms = stamp if stamp is not None else -1
            return None
        finally:
            self.seconds += time.perf_counter() - started
