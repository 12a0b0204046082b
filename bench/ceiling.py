"""The most the default policy's analyzers can give on this machine, gate or no gate.

Measured in this process, one analyzer at a time, on the frames given:

- the CPU time per frame of each image analyzer of the default policy (batches of 4,
  ``process_time``, so every thread's time counts), with onnxruntime on one thread per
  session, so that no time goes to keeping threads in step: the models' work alone;
- OCR as it runs (its text-presence gate on every frame, full detection and recognition
  on the frames the gate passes), which frames it reads text in, and OCR with its gate
  off on just those frames.

The **ceiling** is the CPU per frame of a perfect OCR gate that costs nothing and passes
exactly the frames that read text: every other analyzer as measured, plus OCR without its
gate on the frames that read text. Decoding, HTTP, the pipeline and the text analyzers
(toxicity over the lines read) are left out, so the ceiling flatters: with these models
and the same readings, nothing can run more frames per second on these cores than
``cores / ceiling``. Benchmarks compare it with their baseline and target.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.analyzers.base import ContentKind
from bastion.analyzers.ocr import OcrAnalyzer, OcrConfig
from bastion.config import Settings
from bastion.media.types import Frame
from bastion.pipeline.engine import Engine
from bastion.policy.loader import default_policy

_BATCH = 4


@dataclass
class Costs:
    """CPU milliseconds per frame, averaged over all ``frames`` measured."""

    frames: int
    analyzers: dict[str, float]
    """Each image analyzer of the default policy, OCR as it runs (gate included)."""
    text_frames: int
    """Frames OCR reads at least one line in."""
    ocr_ungated_on_text: float
    """OCR with its gate off on the frames that read text, spread over all frames."""
    cores: int

    @property
    def others(self) -> float:
        return sum(ms for name, ms in self.analyzers.items() if name != "ocr")

    @property
    def today(self) -> float:
        return sum(self.analyzers.values())

    @property
    def ceiling(self) -> float:
        return self.others + self.ocr_ungated_on_text

    def rate(self, ms_per_frame: float) -> float:
        """Frames per second if every core did nothing else."""
        return self.cores * 1000.0 / ms_per_frame if ms_per_frame else float("inf")

    def lines(self) -> list[str]:
        names = ", ".join(f"{n} {ms:.1f}" for n, ms in self.analyzers.items())
        return [
            f"CPU ms per frame, in process, batches of {_BATCH}: {names}",
            f"OCR reads text in {self.text_frames} of {self.frames} frames; OCR without its "
            f"gate on just those: {self.ocr_ungated_on_text:.1f} ms per frame (of all frames)",
            f"analyzers as they run: {self.today:.1f} ms per frame → at most "
            f"{self.rate(self.today):.1f} frames/s on {self.cores} cores",
            f"ceiling (a free, perfect OCR gate): {self.ceiling:.1f} ms per frame → at most "
            f"{self.rate(self.ceiling):.1f} frames/s",
        ]


def _cpu_ms(analyzer: Any, items: Sequence[Any]) -> tuple[float, list[Any]]:
    """CPU milliseconds to preprocess and analyse ``items`` in batches, and the outputs."""
    started = time.process_time()
    outputs: list[Any] = []
    for i in range(0, len(items), _BATCH):
        prepared = [analyzer.preprocess(f) for f in items[i : i + _BATCH]]
        outputs.extend(analyzer.analyze(prepared))
    return (time.process_time() - started) * 1000, outputs


def measure(frames: Sequence[Frame]) -> Costs:
    """:class:`Costs` of the default policy's image analyzers on ``frames``, on this
    machine's cores."""
    if not frames:
        raise ValueError("no frames to measure")
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), runtime={"intra_op_threads": 1})
    engine = Engine(settings)
    wanted = default_policy().analyzers
    engine.load_all(wanted)
    names = engine.analyzers_for(wanted, ContentKind.IMAGE_FRAME)
    names = [n for n in names if engine.analyzers[n].consumes is ContentKind.IMAGE_FRAME]
    per: dict[str, float] = {}
    reads_text: list[bool] = []
    for name in names:
        analyzer = engine.analyzers[name]
        _cpu_ms(analyzer, frames[:2])  # warm up
        ms, outputs = _cpu_ms(analyzer, frames)
        per[name] = ms / len(frames)
        if name == "ocr":
            reads_text = [bool(out.text) for out in outputs]
    text = [f for f, read in zip(frames, reads_text, strict=True) if read]
    ungated = 0.0
    ocr = engine.analyzers.get("ocr")
    if text and isinstance(ocr, OcrAnalyzer):
        config = OcrConfig.model_validate({**ocr.config.model_dump(), "gate": False})
        plain = OcrAnalyzer(config, engine.context)
        _cpu_ms(plain, text[:2])
        ungated, _ = _cpu_ms(plain, text)
    return Costs(len(frames), per, len(text), ungated / len(frames), os.cpu_count() or 1)
