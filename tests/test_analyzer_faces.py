"""Haar-cascade faces on real photos: counts, boxes in original coordinates, no labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from bastion.analyzers.base import Analyzer
from bastion.analyzers.faces import FacesAnalyzer, FacesConfig
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput, Box
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import OPENCV_DOC, benign_photos

pytestmark = pytest.mark.models

needs_opencv_doc = pytest.mark.skipif(
    not (OPENCV_DOC / "messi5.jpg").exists(), reason="Debian opencv-doc photos not installed"
)


def doc_photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(OPENCV_DOC / name).convert("RGB"))


def contains(box: Box, x: float, y: float) -> bool:
    return box.x <= x <= box.x + box.width and box.y <= y <= box.y + box.height


def lfw_mosaic(faces: bool, face: int = 56, cols: int = 5) -> np.ndarray:
    """25 LFW crops (faces or non-faces, shipped with scikit-image) on a grey grid."""
    import cv2
    import skimage.data

    load: Callable[[], np.ndarray] = skimage.data.lfw_subset
    lfw = (load() * 255).astype(np.uint8)
    tiles = lfw[:25] if faces else lfw[100:125]
    cell = int(face * 1.5)
    rows = (len(tiles) + cols - 1) // cols
    grid = np.full((rows * cell, cols * cell), 128, np.uint8)
    off = (cell - face) // 2
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        big = cv2.resize(tile, (face, face), interpolation=cv2.INTER_CUBIC)
        grid[r * cell + off : r * cell + off + face, c * cell + off : c * cell + off + face] = big
    return np.stack([grid] * 3, axis=-1)


class TestFacesContract(AnalyzerContract):
    def build(self) -> Analyzer[Any, Any]:
        return FacesAnalyzer(FacesConfig(), context())


class TestFaces:
    _cache: ClassVar[dict[str, FacesAnalyzer]] = {}

    def analyzer(self, **kw: Any) -> FacesAnalyzer:
        key = repr(sorted(kw.items()))
        if key not in self._cache:
            a = FacesAnalyzer(FacesConfig(**kw), context())
            a.load()
            self._cache[key] = a
        return self._cache[key]

    def run(self, rgb: np.ndarray, **kw: Any) -> AnalyzerOutput:
        a = self.analyzer(**kw)
        return a.analyze([a.preprocess(Frame(rgb=rgb))])[0]

    def test_astronaut_has_one_face(self) -> None:
        out = self.run(benign_photos()["skimage-astronaut"])
        assert len(out.faces) == 1 and out.extra["face_count"] == 1
        assert contains(out.faces[0].box, 220, 115)  # between the eyes
        assert 60 <= out.faces[0].box.width <= 140
        assert out.labels == []

    @needs_opencv_doc
    def test_messi(self) -> None:
        out = self.run(doc_photo("messi5.jpg"))
        assert 1 <= len(out.faces) <= 2
        assert any(contains(f.box, 245, 112) for f in out.faces)

    @needs_opencv_doc
    def test_basketball_player(self) -> None:
        out = self.run(doc_photo("basketball1.png"))
        assert len(out.faces) == 1
        assert contains(out.faces[0].box, 92, 112)

    @pytest.mark.parametrize(
        "name", ["skimage-coffee", "skimage-rocket", "skimage-chelsea", "sklearn-china"]
    )
    def test_photos_without_people(self, name: str) -> None:
        out = self.run(benign_photos()[name])
        assert out.faces == [] and out.extra["face_count"] == 0

    @needs_opencv_doc
    def test_verification_removes_texture_false_positives(self) -> None:
        names = ["starry_night.jpg", "aero1.jpg", "chicky_512.png", "right01.jpg", "right05.jpg"]
        photos = [doc_photo(n) for n in names]
        plain = sum(len(self.run(p, verify=False).faces) for p in photos)
        verified = sum(len(self.run(p).faces) for p in photos)
        assert plain >= 4
        assert verified == 0

    def test_lfw_faces_recall_and_non_faces(self) -> None:
        found = self.run(lfw_mosaic(faces=True))
        assert len(found.faces) >= 18  # of 25 (21 with opencv 4.14)
        assert self.run(lfw_mosaic(faces=False)).faces == []

    def test_boxes_are_in_original_coordinates(self) -> None:
        import cv2

        small = benign_photos()["skimage-astronaut"]
        big = cv2.resize(small, (2048, 2048), interpolation=cv2.INTER_CUBIC)
        a = self.analyzer()
        item = a.preprocess(Frame(rgb=big))
        assert max(item.gray.shape) == a.config.max_side
        (face,) = a.analyze([item])[0].faces
        (ref,) = self.run(small).faces
        assert abs(face.box.x - ref.box.x * 4) < 24 and abs(face.box.y - ref.box.y * 4) < 24
        assert abs(face.box.width - ref.box.width * 4) < 40

    def test_profile_option_finds_no_less(self) -> None:
        photo = benign_photos()["skimage-astronaut"]
        assert len(self.run(photo, profile=True).faces) >= 1
        assert self.analyzer(profile=True).version != self.analyzer().version

    def test_batch_of_mixed_sizes(self) -> None:
        photos = [
            benign_photos()["skimage-astronaut"],
            np.zeros((1, 1, 3), np.uint8),
            benign_photos()["skimage-coffee"],
            np.zeros((30, 4000, 3), np.uint8),
        ]
        a = self.analyzer()
        outs = a.analyze([a.preprocess(Frame(rgb=p)) for p in photos])
        assert [len(o.faces) for o in outs] == [1, 0, 0, 0]
