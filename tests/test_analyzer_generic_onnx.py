"""onnx_detector and onnx_classifier, configured with real models by configuration alone.

The detector runs NudeNet's YOLOv8n export and must reproduce NudeNet's own
``NudeDetector``; the classifier runs the open_nsfw export and must reproduce the nsfw
analyzer's open_nsfw score. The YOLO helpers are also checked on synthetic outputs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from bastion.analyzers.nsfw import NsfwAnalyzer, NsfwConfig, open_nsfw_path
from bastion.analyzers.nudenet import CLASSES, DEFAULT_CLASS_MAP
from bastion.analyzers.onnx_classifier import OnnxClassifierAnalyzer, OnnxClassifierConfig
from bastion.analyzers.onnx_detector import OnnxDetectorAnalyzer, OnnxDetectorConfig
from bastion.errors import AnalyzerUnavailable
from bastion.media.types import Frame
from bastion.models import yolo
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import OPENCV_DOC, benign_photos

# Photos where NudeNet finds faces or feet (and one false positive, the coffee cup).
DETECTOR_PHOTOS = ("skimage-astronaut", "skimage-camera", "skimage-coffee")
DETECTOR_DOC = ("basketball1.png", "chicky_512.png", "pca_test1.jpg", "messi5.jpg")


def nudenet_model() -> Path:
    pytest.importorskip("nudenet")
    from bastion.analyzers.nudenet import model_path

    path = model_path()
    assert path is not None, "nudenet is installed but its 320n.onnx is missing"
    return path


def detector_config(**kw: object) -> OnnxDetectorConfig:
    """onnx_detector set up like NudeNet's reference code, by configuration only."""
    base: dict[str, object] = {
        "model_path": nudenet_model(),
        "model_name": "nudenet-320n",
        "input_size": 320,
        "class_map": DEFAULT_CLASS_MAP,
        "letterbox": "top_left",
        "pad_value": 0,
        "agnostic_nms": True,
    }
    base.update(kw)
    return OnnxDetectorConfig.model_validate(base)


@cache
def shared_detector() -> OnnxDetectorAnalyzer:
    analyzer = OnnxDetectorAnalyzer(detector_config(), context())
    analyzer.load()
    return analyzer


def open_nsfw_config(**kw: object) -> OnnxClassifierConfig:
    """onnx_classifier set up like open_nsfw's reference preprocessing (minus JPEG)."""
    base: dict[str, object] = {
        "model_path": open_nsfw_path(),
        "model_name": "open-nsfw",
        "input_size": 224,
        "resize": "stretch",
        "resize_to": 256,
        "interpolation": "bilinear",
        "layout": "NHWC",
        "channel_order": "BGR",
        "scale": 1.0,
        "mean": (104.0, 117.0, 123.0),
        "std": (1.0, 1.0, 1.0),
        "activation": "none",
        "class_names": ["sfw", "nsfw"],
        "class_map": {"nsfw": "Explicit Nudity"},
    }
    base.update(kw)
    return OnnxClassifierConfig.model_validate(base)


@cache
def shared_classifier() -> OnnxClassifierAnalyzer:
    analyzer = OnnxClassifierAnalyzer(open_nsfw_config(), context())
    analyzer.load()
    return analyzer


def detector_photos() -> dict[str, np.ndarray]:
    photos = {n: benign_photos()[n] for n in DETECTOR_PHOTOS}
    for fname in DETECTOR_DOC:
        path = OPENCV_DOC / fname
        if path.is_file():
            photos[fname] = np.asarray(Image.open(path).convert("RGB"))
    return photos


@pytest.mark.models
class TestOnnxDetectorContract(AnalyzerContract):
    def build(self) -> OnnxDetectorAnalyzer:
        return shared_detector()


@pytest.mark.models
class TestOnnxClassifierContract(AnalyzerContract):
    benign_max_confidence = 20.0

    def build(self) -> OnnxClassifierAnalyzer:
        return shared_classifier()


@pytest.mark.models
def test_detector_matches_nudenet_reference() -> None:
    from nudenet import NudeDetector

    reference = NudeDetector()
    a = shared_detector()
    photos = detector_photos()
    outs = a.analyze([a.preprocess(Frame(rgb=img)) for img in photos.values()])
    compared = 0
    for (name, rgb), out in zip(photos.items(), outs, strict=True):
        # an RGB array reaches NudeNet's model as RGB (it swaps channels twice)
        expected = sorted(reference.detect(np.ascontiguousarray(rgb)), key=lambda d: d["score"])
        got = sorted(out.tags, key=lambda t: t.confidence)
        assert [d["class"] for d in expected] == [t.name for t in got], name
        for d, tag in zip(expected, got, strict=True):
            assert tag.box is not None
            assert abs(tag.confidence - 100 * d["score"]) < 0.5, name
            x, y, w, h = d["box"]  # NudeNet truncates to ints
            assert abs(tag.box.x - x) <= 2 and abs(tag.box.y - y) <= 2, name
            assert abs(tag.box.width - w) <= 2 and abs(tag.box.height - h) <= 2, name
            compared += 1
    assert compared >= 5  # faces and feet in these photos: the comparison is not vacuous
    astronaut = outs[0]
    assert [t.name for t in astronaut.tags] == ["FACE_FEMALE"]


@pytest.mark.models
def test_detector_labels_mapped_classes_with_boxes() -> None:
    a = shared_detector()
    out = a.analyze([a.preprocess(Frame(rgb=benign_photos()["skimage-coffee"]))])[0]
    # NudeNet mistakes the coffee cup for buttocks at low confidence: a mapped class
    assert out.labels, out.tags
    lab = out.labels[0]
    assert lab.name == "Exposed Buttocks or Anus" and lab.parent == "Explicit Nudity"
    assert lab.source == "BUTTOCKS_EXPOSED" and lab.box is not None
    assert lab.confidence < 50 and lab.model == "nudenet-320n"
    assert lab.version == a.version and len(a.version) == 12


@pytest.mark.models
def test_detector_reads_class_names_and_size_from_metadata() -> None:
    cfg = OnnxDetectorConfig(model_path=nudenet_model())
    a = OnnxDetectorAnalyzer(cfg, context())
    a.load()
    prepared = a.preprocess(Frame(rgb=benign_photos()["skimage-astronaut"]))
    assert prepared.tensor.shape == (3, 320, 320)  # from the export's imgsz metadata
    out = a.analyze([prepared])[0]
    assert [t.name for t in out.tags] == ["FACE_FEMALE"]  # names from metadata
    assert out.labels == []  # nothing mapped
    assert a.model_name == "320n"


@pytest.mark.models
def test_classifier_reproduces_open_nsfw_score() -> None:
    nsfw = NsfwAnalyzer(NsfwConfig(jpeg_reencode=False, open_nsfw_precision="float32"), context())
    c = shared_classifier()
    photos = benign_photos()
    doc = OPENCV_DOC / "box.png"  # open_nsfw's highest offline score (0.33; 0.2 without JPEG)
    frames = [Frame(rgb=img) for img in photos.values()]
    if doc.is_file():
        frames.append(Frame(rgb=np.asarray(Image.open(doc).convert("RGB"))))
    ref = nsfw.analyze([nsfw.preprocess(f) for f in frames])
    got = c.analyze([c.preprocess(f) for f in frames])
    for r, g in zip(ref, got, strict=True):
        assert abs(g.extra["scores"]["nsfw"] - r.extra["open_nsfw"]) < 1e-5
        assert abs(g.extra["scores"]["sfw"] + g.extra["scores"]["nsfw"] - 1) < 1e-4
    if doc.is_file():
        box = got[-1]
        assert box.labels and box.labels[0].name == "Explicit Nudity"
        assert box.labels[0].source == "nsfw" and box.labels[0].confidence > 10


def test_missing_model_is_analyzer_unavailable(tmp_path: Path) -> None:
    for analyzer in (
        OnnxDetectorAnalyzer(OnnxDetectorConfig(), context()),
        OnnxClassifierAnalyzer(OnnxClassifierConfig(), context()),
        OnnxDetectorAnalyzer(OnnxDetectorConfig(model_path=tmp_path / "x.onnx"), context()),
        OnnxClassifierAnalyzer(OnnxClassifierConfig(model_path=tmp_path / "x.onnx"), context()),
    ):
        assert analyzer.version == "unavailable"
        with pytest.raises(AnalyzerUnavailable) as info:
            analyzer.load()
        assert info.value.code == "analyzer_unavailable"


def test_configs_reject_unknown_labels_and_classes() -> None:
    with pytest.raises(ValidationError):
        OnnxDetectorConfig(class_map={"gun": "Guns"})
    with pytest.raises(ValidationError):
        OnnxClassifierConfig(class_names=["a", "b"], class_map={"c": "Firearms"})
    with pytest.raises(ValidationError):
        OnnxClassifierConfig(std=(1.0, 0.0, 1.0))
    assert OnnxDetectorConfig(class_map={"gun": "Firearms"}).class_map == {"gun": "Firearms"}


# --- YOLO helpers on synthetic outputs (no model needed) ---------------------------


def _v8_output(rows: list[tuple[float, float, float, float, list[float]]]) -> np.ndarray:
    """[1, 4 + C, A] from (cx, cy, w, h, class scores) rows."""
    arr = np.array([[cx, cy, w, h, *cls] for cx, cy, w, h, cls in rows], dtype=np.float32)
    return arr.T[None]


def test_layouts_are_detected_from_shape() -> None:
    assert yolo.resolve_layout((1, 84, 8400), 80) == ("v8", True)
    assert yolo.resolve_layout((1, 8400, 84), 80) == ("v8", False)
    assert yolo.resolve_layout((1, 25200, 85), 80) == ("v5", False)
    assert yolo.resolve_layout((1, 85, 25200), 80) == ("v5", True)
    assert yolo.resolve_layout((1, 22, 2100), 0) == ("v8", True)
    with pytest.raises(ValueError):
        yolo.resolve_layout((1, 30, 2100), 80)


def test_v8_and_v5_decode_to_the_same_boxes() -> None:
    rows = [(100.0, 50.0, 40.0, 20.0, [0.1, 0.9]), (10.0, 10.0, 4.0, 4.0, [0.05, 0.1])]
    v8 = _v8_output(rows)[0]
    # v5: objectness 1.0 with the same class scores, anchors first
    v5 = np.array([[cx, cy, w, h, 1.0, *cls] for cx, cy, w, h, cls in rows], dtype=np.float32)
    cases: list[tuple[np.ndarray, Literal["v8", "v5"], bool]] = [
        (v8, "v8", True),
        (v8.T, "v8", False),
        (v5, "v5", False),
    ]
    for out, kind, first in cases:
        boxes, scores, ids = yolo.decode(out, kind=kind, channels_first=first, score_threshold=0.25)
        assert boxes.tolist() == [[80.0, 40.0, 120.0, 60.0]]
        assert scores.tolist() == pytest.approx([0.9]) and ids.tolist() == [1]
    # v5 multiplies class scores by objectness
    v5[0, 4] = 0.2
    _, scores, _ = yolo.decode(v5, kind="v5", channels_first=False, score_threshold=0.15)
    assert scores.tolist() == pytest.approx([0.18])


def test_nms_is_class_wise_unless_agnostic() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    same = np.array([0, 0, 0], dtype=np.intp)
    other = np.array([0, 1, 0], dtype=np.intp)
    assert yolo.nms(boxes, scores, 0.45, same).tolist() == [0, 2]
    assert yolo.nms(boxes, scores, 0.45, other).tolist() == [0, 1, 2]
    assert yolo.nms(boxes, scores, 0.45, None).tolist() == [0, 2]
    assert yolo.nms(boxes, scores, 0.45, other, max_detections=2).tolist() == [0, 1]


@pytest.mark.parametrize("mode", ["center", "top_left"])
@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (1, 1), (300, 5000)])
def test_letterbox_boxes_map_back_to_the_frame(mode: str, shape: tuple[int, int]) -> None:
    h, w = shape
    image, geo = yolo.letterbox(
        np.zeros((h, w, 3), dtype=np.uint8),
        (320, 416),
        mode=mode,  # type: ignore[arg-type]
    )
    assert image.shape == (320, 416, 3)
    assert (geo.width, geo.height) == (w, h)
    frame_box = np.array([[0.1 * w, 0.2 * h, 0.6 * w, 0.9 * h]], dtype=np.float32)
    model_box = frame_box.copy()
    model_box[:, [0, 2]] = model_box[:, [0, 2]] * geo.scale_x + geo.pad_x
    model_box[:, [1, 3]] = model_box[:, [1, 3]] * geo.scale_y + geo.pad_y
    assert np.all(model_box[:, [0, 2]] <= 416 + 1e-3) and np.all(model_box[:, [1, 3]] <= 320 + 1e-3)
    np.testing.assert_allclose(yolo.rescale(model_box, geo), frame_box, rtol=1e-4, atol=1e-3)


def test_metadata_parsing() -> None:
    names = yolo.metadata_names({"names": "{0: 'a', 1: 'b', 10: 'k'}"})
    assert names == ["a", "b", "k"]
    assert yolo.metadata_names({"names": "not python"}) == []
    assert yolo.metadata_size({"imgsz": "[320, 480]"}) == (320, 480)
    assert yolo.metadata_size({}) is None
    assert len(CLASSES) == 18
