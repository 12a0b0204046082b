"""Skip frames that look like the last analysed one, by perceptual hash.

The hashes are those of :mod:`bastion.media.hashing` (a 64-bit dHash or Meta's 256-bit
PDQ, computed on the frame scaled down to ``HASH_SIDE``): the same kind of value a
moderation result carries, give or take a few bits for the smaller copy it is computed
on. A frame whose hash lies within ``threshold`` bits (Hamming distance) of the last
*analysed* frame's hash is similar; the reference only moves when a frame is analysed,
so a slow drift is still caught once it adds up to more than the threshold.
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np

from bastion.media.hashing import SIMILARITY_SIDE, PerceptualHashes, hamming
from bastion.media.types import Frame

__all__ = ["HASH_SIDE", "Fingerprinter", "SimilarityFilter"]

# Frames are area-averaged to this longest side before hashing (as videos do to reuse
# the analysis of unchanged frames).
HASH_SIDE = SIMILARITY_SIDE

HashKind = Literal["dhash", "pdq"]


class Fingerprinter:
    """A perceptual hash of an RGB frame, as hex; safe to call from any thread."""

    def __init__(self, kind: HashKind = "pdq") -> None:
        self.kind: HashKind = kind
        self._hashes = PerceptualHashes(HASH_SIDE, pdq=kind == "pdq", dhash=kind == "dhash")
        self._hashes.load()

    def __call__(self, rgb: np.ndarray) -> str:
        return str(self._hashes(Frame(rgb=rgb))[self.kind])


class SimilarityFilter:
    """Compares fingerprints with the last analysed frame's; thread-safe.

    ``threshold`` None turns the filter off (every frame is analysed). Changing the
    threshold keeps the reference; changing the hash kind needs a new filter.
    """

    def __init__(self, threshold: int | None, kind: HashKind = "pdq") -> None:
        self.kind: HashKind = kind
        self.threshold = threshold
        self._fingerprint: Fingerprinter | None = None
        self._reference: str | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.threshold is not None

    def fingerprint(self, rgb: np.ndarray) -> str:
        """The frame's hash of this filter's kind."""
        with self._lock:
            if self._fingerprint is None:
                self._fingerprint = Fingerprinter(self.kind)
            fingerprint = self._fingerprint
        return fingerprint(rgb)

    def distance(self, fingerprint: str | None) -> int | None:
        """Bits between ``fingerprint`` and the last analysed frame's (None: not comparable)."""
        with self._lock:
            reference = self._reference
        if fingerprint is None or reference is None or len(reference) != len(fingerprint):
            return None
        return hamming(reference, fingerprint)

    def check(self, fingerprint: str | None) -> tuple[bool, int | None]:
        """``(similar, distance)``. A frame that is not similar becomes the new reference."""
        distance = self.distance(fingerprint)
        threshold = self.threshold
        similar = threshold is not None and distance is not None and distance <= threshold
        if not similar and fingerprint is not None:
            with self._lock:
                self._reference = fingerprint
        return similar, distance

    def reset(self) -> None:
        """Forget the reference: the next frame is analysed whatever it looks like."""
        with self._lock:
            self._reference = None
