"""The optional nudenet analyzer (NudeNet's YOLOv8n weights, AGPL extra)."""

from __future__ import annotations

from functools import cache

import pytest
from pydantic import ValidationError

import bastion.analyzers.nudenet as nudenet_module
from bastion.analyzers.nudenet import (
    CLASSES,
    DEFAULT_CLASS_MAP,
    NudeNetAnalyzer,
    NudeNetConfig,
)
from bastion.errors import AnalyzerUnavailable, BastionError
from bastion.media.types import Frame
from bastion.policy import taxonomy
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import benign_photos


@cache
def shared() -> NudeNetAnalyzer:
    pytest.importorskip("nudenet")
    analyzer = NudeNetAnalyzer(NudeNetConfig(), context())
    analyzer.load()
    return analyzer


@pytest.mark.models
class TestNudeNetContract(AnalyzerContract):
    def build(self) -> NudeNetAnalyzer:
        return shared()


@pytest.mark.models
def test_faces_are_tags_with_boxes_not_labels() -> None:
    a = shared()
    out = a.analyze([a.preprocess(Frame(rgb=benign_photos()["skimage-astronaut"]))])[0]
    assert [t.name for t in out.tags] == ["FACE_FEMALE"]
    tag = out.tags[0]
    assert tag.box is not None and tag.confidence > 60
    # the face of the 512×512 portrait sits in its upper middle
    assert 120 < tag.box.x + tag.box.width / 2 < 320 and tag.box.y < 200
    assert out.labels == []
    assert a.info().model == "nudenet-320n" and len(a.version) == 12


def test_class_map_covers_the_taxonomy() -> None:
    assert set(DEFAULT_CLASS_MAP) <= set(CLASSES)
    for label in DEFAULT_CLASS_MAP.values():
        taxonomy.get(label)
    assert DEFAULT_CLASS_MAP["FEMALE_GENITALIA_EXPOSED"] == "Exposed Female Genitalia"
    assert DEFAULT_CLASS_MAP["FEMALE_BREAST_EXPOSED"] == "Exposed Female Nipple"
    assert DEFAULT_CLASS_MAP["ANUS_EXPOSED"] == "Exposed Buttocks or Anus"
    assert DEFAULT_CLASS_MAP["FEMALE_BREAST_COVERED"] == "Partially Exposed Female Breast"
    for tag_only in (
        "FACE_FEMALE",
        "FACE_MALE",
        "BELLY_EXPOSED",
        "ARMPITS_EXPOSED",
        "FEET_COVERED",
    ):
        assert tag_only not in DEFAULT_CLASS_MAP
    analyzer = NudeNetAnalyzer(NudeNetConfig(), context())
    assert "Exposed Male Genitalia" in analyzer.categories()


def test_custom_class_map_is_validated() -> None:
    cfg = NudeNetConfig(class_map={"BELLY_EXPOSED": "Bare Back"})
    assert NudeNetAnalyzer(cfg, context()).categories() == ["Bare Back"]
    with pytest.raises(ValidationError):
        NudeNetConfig(class_map={"NOT_A_CLASS": "Bare Back"})
    with pytest.raises(ValidationError):
        NudeNetConfig(class_map={"BELLY_EXPOSED": "Not A Label"})


def test_without_nudenet_construction_works_and_load_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nudenet_module, "model_path", lambda: None)
    analyzer = NudeNetAnalyzer(NudeNetConfig(), context())
    assert analyzer.version == "unavailable"
    assert analyzer.info().categories
    with pytest.raises(AnalyzerUnavailable) as info:
        analyzer.load()
    err = info.value
    assert isinstance(err, BastionError)
    assert err.code == "analyzer_unavailable" and err.status == 503
    assert "bastion[nudenet]" in err.message
