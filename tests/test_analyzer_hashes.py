"""PDQ and dHash: stable under re-encoding and resizing, far apart for different photos."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from bastion.analyzers.base import Analyzer
from bastion.analyzers.hashes import HashesAnalyzer, HashesConfig
from bastion.media.hashing import PerceptualHashes, bits_to_hex, dhash, hamming
from bastion.media.types import Frame
from bastion.pipeline.engine import Engine
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import OPENCV_DOC, benign_photos, encode
from tests.support.settings import make_settings

pytestmark = pytest.mark.models


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class TestHashesContract(AnalyzerContract):
    def build(self) -> Analyzer[Any, Any]:
        return HashesAnalyzer(HashesConfig(), context())


class TestHashes:
    _cache: ClassVar[dict[str, HashesAnalyzer]] = {}

    def hashes(self, rgb: np.ndarray, **kw: Any) -> dict[str, Any]:
        key = repr(sorted(kw.items()))
        if key not in self._cache:
            a = HashesAnalyzer(HashesConfig(**kw), context())
            a.load()
            self._cache[key] = a
        a = self._cache[key]
        return a.analyze([a.preprocess(Frame(rgb=rgb))])[0].hashes

    def test_format(self) -> None:
        h = self.hashes(benign_photos()["skimage-astronaut"])
        assert set(h) == {"pdq", "pdq_quality", "dhash"}
        assert re.fullmatch(r"[0-9a-f]{64}", h["pdq"])
        assert re.fullmatch(r"[0-9a-f]{16}", h["dhash"])
        assert isinstance(h["pdq_quality"], int)

    @pytest.mark.parametrize(
        "name", ["skimage-astronaut", "skimage-camera", "skimage-coffee", "sklearn-china"]
    )
    def test_png_and_jpeg_hash_alike(self, name: str) -> None:
        rgb = benign_photos()[name]
        png = self.hashes(decode(encode(rgb, "PNG")))
        jpg = self.hashes(decode(encode(rgb, "JPEG", quality=90)))
        assert png["pdq"] == self.hashes(rgb)["pdq"]
        assert hamming(png["pdq"], jpg["pdq"]) <= 16
        assert hamming(png["dhash"], jpg["dhash"]) <= 4
        assert png["pdq_quality"] >= 80

    def test_resized_copy_stays_close(self) -> None:
        import cv2

        rgb = benign_photos()["sklearn-china"]
        half = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
        a, b = self.hashes(rgb), self.hashes(half)
        assert hamming(a["pdq"], b["pdq"]) <= 32
        assert hamming(a["dhash"], b["dhash"]) <= 6

    def test_different_photos_are_far_apart(self) -> None:
        hashes = {n: self.hashes(img) for n, img in benign_photos().items()}
        for x, y in itertools.combinations(hashes, 2):
            assert hamming(hashes[x]["pdq"], hashes[y]["pdq"]) > 80, (x, y)
            assert hamming(hashes[x]["dhash"], hashes[y]["dhash"]) > 10, (x, y)

    @pytest.mark.skipif(
        not (OPENCV_DOC / "basketball1.png").exists(), reason="Debian opencv-doc not installed"
    )
    def test_near_duplicate_frames_are_close(self) -> None:
        one = np.asarray(Image.open(OPENCV_DOC / "basketball1.png").convert("RGB"))
        two = np.asarray(Image.open(OPENCV_DOC / "basketball2.png").convert("RGB"))
        assert hamming(self.hashes(one)["pdq"], self.hashes(two)["pdq"]) <= 40

    def test_flat_and_tiny_frames_have_zero_quality(self) -> None:
        flat = self.hashes(np.full((64, 300, 3), 128, np.uint8))
        tiny = self.hashes(np.zeros((1, 1, 3), np.uint8))
        assert flat["pdq_quality"] == 0 and tiny["pdq_quality"] == 0
        assert tiny["dhash"] == "0" * 16

    def test_downscaling_large_frames_moves_pdq_little(self) -> None:
        import cv2

        rgb = benign_photos()["skimage-astronaut"]
        big = cv2.resize(rgb, (2048, 2048), interpolation=cv2.INTER_CUBIC)
        scaled, full = self.hashes(big), self.hashes(big, max_side=0)
        assert hamming(scaled["pdq"], full["pdq"]) <= 16
        assert hamming(scaled["pdq"], self.hashes(rgb)["pdq"]) <= 24

    def test_switches(self) -> None:
        rgb = benign_photos()["skimage-coffee"]
        assert set(self.hashes(rgb, pdq=False)) == {"dhash"}
        assert set(self.hashes(rgb, dhash=False)) == {"pdq", "pdq_quality"}


def test_hamming() -> None:
    assert hamming("00", "ff") == 8
    assert hamming("f0f0", "f0f1") == 1
    assert hamming("abc", "abc") == 0
    with pytest.raises(ValueError):
        hamming("00", "000")


def test_bits_to_hex_is_most_significant_first() -> None:
    bits = np.zeros(16, dtype=np.uint8)
    bits[0] = 1
    bits[15] = 1
    assert bits_to_hex(bits) == "8001"


def test_dhash_reflects_horizontal_gradients() -> None:
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    assert dhash(ramp) == "f" * 16
    assert dhash(ramp[:, ::-1].copy()) == "0" * 16


@pytest.mark.parametrize(
    "switches",
    [{}, {"max_side": 256}, {"max_side": 0, "dhash": False}, {"pdq": False}],
    ids=["defaults", "smaller", "full-size-pdq", "dhash"],
)
def test_the_analyzer_reports_what_the_hashing_module_computes(switches: dict[str, Any]) -> None:
    import cv2

    rgb = cv2.resize(benign_photos()["sklearn-china"], (1500, 1100), interpolation=cv2.INTER_AREA)
    analyzer = HashesAnalyzer(HashesConfig(**switches), context())
    analyzer.load()
    reported = analyzer.analyze([analyzer.preprocess(Frame(rgb=rgb))])[0].hashes
    hashing = PerceptualHashes(**switches)
    assert analyzer.hashing == hashing
    assert reported == hashing(Frame(rgb=rgb))


async def test_stored_results_hash_as_the_configured_analyzer_does(tmp_path: Path) -> None:
    """Stored results index the request image's PDQ as the results being stored carry it."""
    defaults = PerceptualHashes(**HashesConfig().model_dump(include={"max_side", "pdq", "dhash"}))
    cases = [
        ([HashesConfig(max_side=256, dhash=False)], PerceptualHashes(256, dhash=False)),
        ([HashesConfig(pdq=False)], defaults),  # no PDQ from it: the analyzer's defaults
        ([], defaults),
    ]
    for analyzers, expected in cases:
        engine = Engine(make_settings(tmp_path, analyzers=analyzers))
        try:
            assert engine.perceptual_hashing() == expected
        finally:
            await engine.close()
