"""Perceptual hashes of the pixels: PDQ (256 bits, with quality) and a 64-bit dHash.

PDQ is written as 64 hex digits in the reference implementation's order (the same
string other PDQ tools and shared hash lists use); ``pdq_quality`` (0-100) says how
much detail the hash rests on: hashes below about 50 match poorly. The dHash is a
cheap 64-bit difference hash (9×8 grey thumbnail, one bit per horizontal gradient) for
near-duplicate skipping. Frames larger than ``max_side`` are area-averaged down first,
which bounds the cost and moves a PDQ hash by only a few bits. The byte-level sha256
is the pipeline's, not this analyzer's: it only sees pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.analyzers.base import Analyzer, AnalyzerConfig, RuntimeContext
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput


class HashesConfig(AnalyzerConfig):
    type: Literal["hashes"] = "hashes"
    max_side: int = Field(
        1024,
        ge=0,
        description="Frames with a longer side are area-averaged down to it before hashing "
        "(speed; PDQ moves by a few bits at most); 0 hashes at full size.",
    )
    pdq: bool = Field(True, description="Compute the PDQ hash and its quality.")
    dhash: bool = Field(True, description="Compute the 64-bit difference hash.")


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


@dataclass(frozen=True, slots=True)
class HashesInput:
    rgb: np.ndarray


class HashesAnalyzer(Analyzer[HashesConfig, HashesInput]):
    """Perceptual hashes: PDQ with quality, and a 64-bit dHash."""

    kind = "hashes"
    consumes: ClassVar[str] = "RGB frame, longer side ≤ 1024"
    config_model = HashesConfig
    emits = ("hashes",)

    def __init__(self, config: HashesConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._pdq: Any = None
        self._version: str | None = None

    @property
    def model_name(self) -> str:
        return "pdq+dhash"

    @property
    def version(self) -> str:
        if self._version is None:
            try:
                self._version = f"pdqhash-{metadata.version('pdqhash')}"
            except metadata.PackageNotFoundError:
                return "unavailable"
        return self._version

    def categories(self) -> list[str]:
        return []

    def load(self) -> None:
        if self._pdq is None and self.config.pdq:
            import pdqhash

            self._pdq = pdqhash

    def preprocess(self, frame: Frame) -> HashesInput:
        import cv2

        rgb: np.ndarray = np.ascontiguousarray(frame.rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        limit = self.config.max_side
        if limit and max(h, w) > limit:
            s = limit / max(h, w)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        return HashesInput(rgb=rgb)

    def analyze(self, batch: Sequence[HashesInput]) -> list[AnalyzerOutput]:
        self.load()
        return [AnalyzerOutput(hashes=self._hashes(item.rgb)) for item in batch]

    def _hashes(self, rgb: np.ndarray) -> dict[str, Any]:
        import cv2

        out: dict[str, Any] = {}
        if self.config.pdq and self._pdq is not None:
            bits, quality = self._pdq.compute(rgb)
            out["pdq"] = bits_to_hex(bits)
            out["pdq_quality"] = int(quality)
        if self.config.dhash:
            out["dhash"] = dhash(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        return out
