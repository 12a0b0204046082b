"""Perceptual hashes of the pixels in results: PDQ (256 bits, with quality) and a 64-bit
dHash, as :mod:`bastion.media.hashing` computes them (what they are, how they are
written, why large frames are scaled down first).

The analyzer only plugs that module in, with its settings; stored results and live
streams hash with the same module, so their hashes compare with the ones results carry.
The byte-level sha256 is the pipeline's, not this analyzer's: it only sees pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, RuntimeContext
from bastion.media.hashing import DEFAULT_MAX_SIDE, PerceptualHashes
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput


class HashesConfig(AnalyzerConfig):
    type: Literal["hashes"] = "hashes"
    max_side: int = Field(
        DEFAULT_MAX_SIDE,
        ge=0,
        description="Frames with a longer side are area-averaged down to it before hashing "
        "(speed; PDQ moves by a few bits at most); 0 hashes at full size.",
    )
    pdq: bool = Field(True, description="Compute the PDQ hash and its quality.")
    dhash: bool = Field(True, description="Compute the 64-bit difference hash.")


@dataclass(frozen=True, slots=True)
class HashesInput:
    rgb: np.ndarray


class HashesAnalyzer(FrameAnalyzer[HashesConfig, HashesInput]):
    """Perceptual hashes: PDQ with quality, and a 64-bit dHash."""

    kind = "hashes"
    parallel_batches = True
    input: ClassVar[str] = "RGB frame, longer side ≤ 1024"
    config_model = HashesConfig
    emits = ("hashes",)

    def __init__(self, config: HashesConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self.hashing = PerceptualHashes(config.max_side, pdq=config.pdq, dhash=config.dhash)
        """The hashes this analyzer reports, as :mod:`bastion.media.hashing` computes them."""
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
        self.hashing.load()

    def preprocess(self, frame: Frame) -> HashesInput:
        return HashesInput(rgb=self.hashing.prepare(frame))

    def analyze(self, batch: Sequence[HashesInput]) -> list[AnalyzerOutput]:
        return [AnalyzerOutput(hashes=self.hashing.of_prepared(item.rgb)) for item in batch]
