"""Perceptual hashes of pixels, and how many bits two hashes differ in.

Several parts of Bastion compare pictures by hash: the ``hashes`` analyzer reports them
in every result, stored results find near-duplicate images by PDQ distance, and live
streams skip frames that look like the last analysed one, and videos reuse the analysis
of a frame for the unchanged frames after it. They all hash here, so a hash one of them
computes compares with the others'.

PDQ (Meta's 256-bit perceptual hash) is written as 64 hex digits in the reference
implementation's order (the same string other PDQ tools and shared hash lists use); its
quality (0-100) says how much detail the hash rests on: hashes below about 50 match
poorly. The dHash is a cheap 64-bit difference hash (9×8 grey thumbnail, one bit per
horizontal gradient). :class:`PerceptualHashes` area-averages frames larger than its
``max_side`` down first, which bounds the cost and moves a PDQ hash by only a few bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.media.types import Frame

__all__ = [
    "DEFAULT_MAX_SIDE",
    "SIMILARITY_SIDE",
    "PerceptualHashes",
    "bits_to_hex",
    "dhash",
    "grey_grid",
    "hamming",
    "pdq_hash",
    "scaled_down",
]

DEFAULT_MAX_SIDE = 1024
"""Longest side frames are scaled down to before hashing, unless told otherwise."""

SIMILARITY_SIDE = 256
"""Longest side frames are area-averaged to before they are compared with the last
analysed frame (live similarity skip, video frame reuse): dHash looks at 9×8 pixels and
PDQ at 64×64, so more detail only costs time."""


def hamming(a_hex: str, b_hex: str) -> int:
    """Bits that differ between two hashes of the same length, written in hex."""
    if len(a_hex) != len(b_hex):
        raise ValueError(f"hash lengths differ: {len(a_hex)} != {len(b_hex)}")
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


def bits_to_hex(bits: np.ndarray) -> str:
    """Hex of a bit vector, first bit most significant."""
    return np.packbits(np.asarray(bits, dtype=np.uint8).ravel()).tobytes().hex()


def dhash(gray: np.ndarray) -> str:
    """64-bit difference hash of a grey image: 16 hex digits."""
    import cv2

    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return bits_to_hex(small[:, 1:] > small[:, :-1])


def grey_grid(gray: np.ndarray, side: int) -> np.ndarray:
    """``gray`` area-averaged to ``side``×``side`` cells, float32 grey levels (0-255).

    A coarse picture of the frame: a line of text, a QR code or a logo that appears moves
    the cells it covers by many grey levels, where a 64-bit hash of the whole frame may
    not change at all; compression noise, averaged over a cell, moves them by about one.
    """
    import cv2

    grid: np.ndarray = cv2.resize(
        np.asarray(gray, dtype=np.float32), (side, side), interpolation=cv2.INTER_AREA
    )
    return grid


def pdq_hash(rgb: np.ndarray) -> tuple[str, int]:
    """PDQ hash (64 hex digits, reference bit order) and quality (0-100) of an RGB
    uint8 image."""
    import pdqhash

    bits, quality = pdqhash.compute(rgb)
    return bits_to_hex(bits), int(quality)


def scaled_down(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` as contiguous uint8, area-averaged down to ``max_side`` when its longer
    side is larger (0: never)."""
    import cv2

    out: np.ndarray = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = out.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    return out


@dataclass(frozen=True, slots=True)
class PerceptualHashes:
    """Which hashes of a frame, computed at what size; safe to use from any thread.

    The hashes come as a result carries them: ``pdq`` and ``pdq_quality``, and
    ``dhash``, each when switched on.
    """

    max_side: int = DEFAULT_MAX_SIDE
    """Frames with a longer side are area-averaged down to it first; 0 hashes at full size."""
    pdq: bool = True
    """Compute the PDQ hash and its quality."""
    dhash: bool = True
    """Compute the 64-bit difference hash."""

    def load(self) -> None:
        """Import the PDQ library now rather than on the first hash."""
        if self.pdq:
            import pdqhash  # noqa: F401

    def prepare(self, frame: Frame) -> np.ndarray:
        """The pixels the hashes are computed on: ``frame`` scaled down to ``max_side``."""
        return scaled_down(frame.rgb, self.max_side)

    def of_prepared(self, rgb: np.ndarray) -> dict[str, Any]:
        """The hashes of pixels :meth:`prepare` returned."""
        import cv2

        out: dict[str, Any] = {}
        if self.pdq:
            out["pdq"], out["pdq_quality"] = pdq_hash(rgb)
        if self.dhash:
            out["dhash"] = dhash(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        return out

    def __call__(self, frame: Frame) -> dict[str, Any]:
        """The hashes of ``frame``."""
        return self.of_prepared(self.prepare(frame))
