"""Which frames of a live stream are analysed: one per interval, similar ones skipped.

Two stages, so that the cheap one can run before a frame is converted to RGB:

1. :meth:`StreamSampler.due` (by stream time): the first frame is due at once, then
   the first frame at or after each step of a grid ``interval_s`` apart, anchored at
   the first frame. A frame late by less than half an interval keeps the grid, so the
   spacing does not drift; after a longer gap, or when time goes backwards (a source
   that restarted its clock), the grid is re-anchored at the frame that ends it, so
   the next frame is a whole interval later. Changing the interval re-anchors the grid
   at the last frame taken: a shorter interval can make the next frame due at once.
2. :meth:`StreamSampler.accept` (by picture): a due frame whose perceptual hash is
   within ``similarity_threshold`` bits of the last *analysed* frame's is skipped as
   similar (counted); see :mod:`bastion.live.reading.similarity`.

The sampling may change at any time (:meth:`StreamSampler.update`, e.g. when the rules
that apply to a stream change) from another thread than the one sampling.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from bastion.live.reading.config import LiveSampling
from bastion.live.reading.similarity import SimilarityFilter

__all__ = ["SamplerStats", "StreamSampler"]

# A frame this close before a grid step counts as on it (timestamps are often rounded to ms).
_TOLERANCE_S = 0.02


@dataclass(frozen=True, slots=True)
class SamplerStats:
    """What the sampler has seen so far."""

    offered: int
    due: int
    analyzed: int
    similar: int
    last_distance: int | None


class StreamSampler:
    """Picks the frames to analyse; thread-safe. See the module documentation."""

    def __init__(self, sampling: LiveSampling | None = None) -> None:
        self._sampling = sampling or LiveSampling()
        self._similarity = SimilarityFilter(
            self._sampling.similarity_threshold, self._sampling.hash
        )
        self._lock = threading.Lock()
        self._last: float | None = None
        self._next: float | None = None
        self._offered = 0
        self._due = 0
        self._analyzed = 0
        self._similar = 0
        self._last_distance: int | None = None

    # ---- settings ----------------------------------------------------------
    @property
    def sampling(self) -> LiveSampling:
        return self._sampling

    @property
    def interval_s(self) -> float:
        return self._sampling.interval_s

    @property
    def similarity_enabled(self) -> bool:
        return self._similarity.enabled

    def update(self, sampling: LiveSampling) -> None:
        """Apply new settings from now on (see the module documentation)."""
        with self._lock:
            old, self._sampling = self._sampling, sampling
            if sampling.interval_s != old.interval_s and self._last is not None:
                self._next = self._last + sampling.interval_s
            if sampling.hash != old.hash:
                self._similarity = SimilarityFilter(sampling.similarity_threshold, sampling.hash)
            else:
                self._similarity.threshold = sampling.similarity_threshold

    # ---- stage 1: time -----------------------------------------------------
    def _early(self, stream_time_s: float) -> bool:
        """True when a frame at ``stream_time_s`` comes before the next grid step."""
        last, step = self._last, self._next
        tolerance = min(_TOLERANCE_S, self._sampling.interval_s / 4)
        return (
            last is not None
            and step is not None
            and last <= stream_time_s
            and stream_time_s + tolerance < step
        )

    def is_due(self, stream_time_s: float) -> bool:
        """Whether a frame at ``stream_time_s`` would be taken (nothing is counted or taken)."""
        with self._lock:
            return not self._early(stream_time_s)

    def due(self, stream_time_s: float) -> bool:
        """Whether the frame at ``stream_time_s`` is due for a look; if so it is taken."""
        with self._lock:
            self._offered += 1
            if self._early(stream_time_s):
                return False
            interval = self._sampling.interval_s
            tolerance = min(_TOLERANCE_S, interval / 4)
            last, step = self._last, self._next
            if last is not None and step is not None and stream_time_s >= last:
                behind = stream_time_s + tolerance - step
                # a little late: keep the grid; after a gap: re-anchor it here
                step = step + interval if behind < interval / 2 else stream_time_s + interval
            else:  # the first frame, or time went backwards
                step = stream_time_s + interval
            self._last, self._next = stream_time_s, step
            self._due += 1
            return True

    # ---- stage 2: picture --------------------------------------------------
    def fingerprint(self, rgb: np.ndarray) -> str | None:
        """The frame's perceptual hash when the similarity skip is on, else None."""
        similarity = self._similarity
        return similarity.fingerprint(rgb) if similarity.enabled else None

    def accept(self, fingerprint: str | None) -> bool:
        """True: analyse the frame (it becomes the reference); False: skipped as similar."""
        similar, distance = self._similarity.check(fingerprint)
        with self._lock:
            if distance is not None:
                self._last_distance = distance
            if similar:
                self._similar += 1
            else:
                self._analyzed += 1
        return not similar

    def select(self, stream_time_s: float, rgb: np.ndarray) -> bool:
        """Both stages at once, for a frame already in RGB: True when it is to be analysed."""
        if not self.due(stream_time_s):
            return False
        return self.accept(self.fingerprint(rgb))

    def reset_similarity(self) -> None:
        """Forget the last analysed picture: the next due frame is analysed."""
        self._similarity.reset()

    @property
    def stats(self) -> SamplerStats:
        with self._lock:
            return SamplerStats(
                offered=self._offered,
                due=self._due,
                analyzed=self._analyzed,
                similar=self._similar,
                last_distance=self._last_distance,
            )
