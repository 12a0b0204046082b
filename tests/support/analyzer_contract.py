"""A reusable contract every analyzer's tests inherit (one subclass per analyzer).

Subclasses set ``make_analyzer`` (a fixture-free factory) and get the interface checks
for free: an analyzer of image frames that says what its model gets, one output per
input in order, labels from the declared categories with model name and version, a
batch equal to the same frames one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from bastion.analyzers.base import Analyzer, ContentKind, FrameAnalyzer, RuntimeContext
from bastion.media.types import Frame
from bastion.policy import taxonomy
from bastion.runtime.config import RuntimeConfig
from tests.support.media import benign_photos


def context(cache_dir: Path | None = None) -> RuntimeContext:
    cfg = RuntimeConfig() if cache_dir is None else RuntimeConfig(cache_dir=cache_dir)
    return RuntimeContext(cfg)


class AnalyzerContract:
    """Mix into a test class and define ``build(self) -> Analyzer``."""

    # labels a benign photo may never carry at or above this confidence
    benign_max_confidence: ClassVar[float] = 50.0
    _cache: ClassVar[dict[type, Analyzer[Any, Any]]] = {}

    def build(self) -> Analyzer[Any, Any]:
        raise NotImplementedError

    @pytest.fixture
    def analyzer(self) -> Analyzer[Any, Any]:
        cls = type(self)
        if cls not in AnalyzerContract._cache:
            a = self.build()
            a.load()
            AnalyzerContract._cache[cls] = a
        return AnalyzerContract._cache[cls]

    def frames(self) -> list[Frame]:
        photos = benign_photos()
        return [Frame(rgb=photos[n]) for n in sorted(photos)[:4]]

    def test_declares_itself(self, analyzer: Analyzer[Any, Any]) -> None:
        info = analyzer.info()
        assert info.name and info.version and info.model
        # the contract feeds frames: it holds for analyzers of image frames
        assert isinstance(analyzer, FrameAnalyzer)
        assert info.consumes is ContentKind.IMAGE_FRAME
        assert info.model_dump(mode="json")["consumes"] == "image_frame"
        assert info.input and info.input == type(analyzer).input
        for cat in info.categories:
            taxonomy.get(cat)

    def test_one_output_per_input_and_batch_equals_single(
        self, analyzer: Analyzer[Any, Any]
    ) -> None:
        frames = self.frames()
        batch = analyzer.analyze([analyzer.preprocess(f) for f in frames])
        assert len(batch) == len(frames)
        for f, out in zip(frames, batch, strict=True):
            single = analyzer.analyze([analyzer.preprocess(f)])[0]
            assert [lab.name for lab in single.labels] == [lab.name for lab in out.labels]
            for a, b in zip(single.labels, out.labels, strict=True):
                assert abs(a.confidence - b.confidence) < 1.0

    def test_labels_are_declared_and_attributed(self, analyzer: Analyzer[Any, Any]) -> None:
        allowed = set(analyzer.categories())
        for out in analyzer.analyze([analyzer.preprocess(f) for f in self.frames()]):
            for lab in out.labels:
                assert lab.name in allowed
                assert lab.version == analyzer.version or lab.version
                assert lab.model and lab.analyzer == analyzer.name
                assert 0 <= lab.confidence <= 100

    def test_benign_photos_stay_below_threshold(self, analyzer: Analyzer[Any, Any]) -> None:
        photos = benign_photos()
        frames = [Frame(rgb=img) for img in photos.values()]
        outs = analyzer.analyze([analyzer.preprocess(f) for f in frames])
        for name, out in zip(photos, outs, strict=True):
            high = [lab for lab in out.labels if lab.confidence >= self.benign_max_confidence]
            assert not high, f"{name}: {high}"

    def test_handles_tiny_and_grey_frames(self, analyzer: Analyzer[Any, Any]) -> None:
        tiny = Frame(rgb=np.zeros((1, 1, 3), dtype=np.uint8))
        flat = Frame(rgb=np.full((64, 300, 3), 128, dtype=np.uint8))
        outs = analyzer.analyze([analyzer.preprocess(tiny), analyzer.preprocess(flat)])
        assert len(outs) == 2
