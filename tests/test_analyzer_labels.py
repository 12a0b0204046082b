"""The EfficientNet-Lite0 labels analyzer: real photos, embeddings, the exporter's safety."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from bastion.analyzers.base import Analyzer, file_version
from bastion.analyzers.labels import (
    DEFAULT_CLASS_LABELS,
    DEFAULT_PRODUCT_CLASSES,
    PRODUCT_LABEL,
    LabelsAnalyzer,
    LabelsConfig,
    imagenet_classes,
)
from bastion.media.types import Frame
from bastion.models import efficientnet_export as export_mod
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import OPENCV_DOC, benign_photos

# photo -> ImageNet classes any of which is an acceptable top-1
_SKIMAGE_EXPECTED = {
    "skimage-chelsea": {"tiger cat", "tabby", "Egyptian cat"},
    "skimage-coffee": {"espresso", "cup", "coffee mug"},
    "skimage-rocket": {"missile", "projectile", "space shuttle"},
    "skimage-camera": {"tripod", "reflex camera"},
    "skimage-motorcycle": {"moped", "motor scooter"},
}
_OPENCV_EXPECTED = {
    "baboon.jpg": {"baboon"},
    "orange.jpg": {"orange"},
    "fruits.jpg": {"lemon", "orange"},
    "apple.jpg": {"Granny Smith"},
    "butterfly.jpg": {"ringlet", "admiral", "monarch"},
    "messi5.jpg": {"soccer ball"},
}


def _top1(analyzer: Analyzer[Any, Any], images: list[np.ndarray]) -> list[str]:
    outs = analyzer.analyze([analyzer.preprocess(Frame(rgb=img)) for img in images])
    return [out.tags[0].name for out in outs]


@pytest.mark.models
class TestLabelsAnalyzer(AnalyzerContract):
    def build(self) -> Analyzer[Any, Any]:
        return LabelsAnalyzer(LabelsConfig(), context())

    def test_skimage_photos_get_their_class(self, analyzer: Analyzer[Any, Any]) -> None:
        photos = benign_photos()
        names = list(_SKIMAGE_EXPECTED)
        for name, top in zip(names, _top1(analyzer, [photos[n] for n in names]), strict=True):
            assert top in _SKIMAGE_EXPECTED[name], f"{name}: {top}"

    def test_opencv_photos_get_their_class(self, analyzer: Analyzer[Any, Any]) -> None:
        paths = [OPENCV_DOC / n for n in _OPENCV_EXPECTED]
        if not all(p.is_file() for p in paths):
            pytest.skip("Debian's opencv-doc photos are not installed")
        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        for path, top in zip(paths, _top1(analyzer, images), strict=True):
            assert top in _OPENCV_EXPECTED[path.name], f"{path.name}: {top}"

    def test_tags_are_ranked_and_attributed(self, analyzer: Analyzer[Any, Any]) -> None:
        out = analyzer.analyze([analyzer.preprocess(Frame(rgb=benign_photos()["skimage-coffee"]))])
        tags = out[0].tags
        assert tags[0].name == "espresso" and tags[0].confidence > 60
        assert len(tags) <= LabelsConfig().top_k
        assert [t.confidence for t in tags] == sorted((t.confidence for t in tags), reverse=True)
        assert all(t.analyzer == "labels" and t.version == analyzer.version for t in tags)
        assert analyzer.version == file_version(export_mod.weights_path())

    def test_embedding_is_unit_and_separates_photos(self, analyzer: Analyzer[Any, Any]) -> None:
        photos = benign_photos()
        cat, coffee = photos["skimage-chelsea"], photos["skimage-coffee"]
        h, w = cat.shape[:2]
        crops = [cat[: int(h * 0.85), : int(w * 0.85)], cat[int(h * 0.15) :, int(w * 0.15) :]]
        outs = analyzer.analyze([analyzer.preprocess(Frame(rgb=img)) for img in [*crops, coffee]])
        embs = [out.embedding for out in outs]
        for e in embs:
            assert e is not None and e.shape == (1280,) and e.dtype == np.float32
            assert abs(float(np.linalg.norm(e)) - 1.0) < 1e-4
        a, b, c = (np.asarray(e) for e in embs)
        same, other = float(a @ b), float(a @ c)
        assert same > other + 0.2, (same, other)

    def test_handles_any_shape(self, analyzer: Analyzer[Any, Any]) -> None:
        shapes = [(1, 1), (1, 500), (700, 3), (224, 224), (2000, 3000)]
        frames = [Frame(rgb=np.full((*s, 3), 90, dtype=np.uint8)) for s in shapes]
        pre = [analyzer.preprocess(f) for f in frames]
        assert all(p.shape == (3, 224, 224) and p.dtype == np.float32 for p in pre)
        assert len(analyzer.analyze(pre)) == len(frames)


@pytest.mark.models
def test_class_tables_are_configurable() -> None:
    cfg = LabelsConfig(
        class_labels={"Pills": ["espresso", "cup"]},
        product_classes=["tabby", "tiger cat", "Egyptian cat"],
        top_k=1,
    )
    analyzer = LabelsAnalyzer(cfg, context())
    assert analyzer.categories() == ["Pills", PRODUCT_LABEL]
    photos = benign_photos()
    frames = [Frame(rgb=photos["skimage-coffee"]), Frame(rgb=photos["skimage-chelsea"])]
    coffee, cat = analyzer.analyze([analyzer.preprocess(f) for f in frames])
    pills = {lab.name: lab for lab in coffee.labels}["Pills"]
    assert pills.confidence > 80 and pills.source == "espresso" and pills.parent
    assert PRODUCT_LABEL not in {lab.name for lab in coffee.labels}
    product = {lab.name: lab for lab in cat.labels}[PRODUCT_LABEL]
    assert product.confidence > 80 and product.parent == "Illegal Ads"
    assert any(t.name.startswith("product:") for t in cat.tags)
    assert not any(t.name.startswith("product:") for t in coffee.tags)


def test_config_refuses_unknown_names() -> None:
    with pytest.raises(ValidationError):
        LabelsConfig(class_labels={"Firearms": ["bazooka"]})
    with pytest.raises(ValidationError):
        LabelsConfig(class_labels={"Not A Label": ["rifle"]})
    with pytest.raises(ValidationError):
        LabelsConfig(product_classes=["handbag"])
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[281] == "tabby" and names[967] == "espresso"


def test_default_tables_name_real_classes() -> None:
    analyzer = LabelsAnalyzer(LabelsConfig(), context())
    assert set(analyzer.categories()) >= {
        "Firearms",
        "Knives and Blades",
        "Alcoholic Beverages",
        "Drug Paraphernalia",
        "Pills",
        PRODUCT_LABEL,
    }
    LabelsConfig(class_labels={k: list(v) for k, v in DEFAULT_CLASS_LABELS.items()})
    LabelsConfig(product_classes=list(DEFAULT_PRODUCT_CLASSES))
    assert analyzer.model_name == export_mod.MODEL_NAME


# --- the state-dict reader ------------------------------------------------


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _legacy_file(path: Path, obj: object, *, evil_magic: object = None) -> None:
    with path.open("wb") as fh:
        pickle.dump(evil_magic if evil_magic is not None else export_mod._LEGACY_MAGIC, fh, 2)
        pickle.dump(export_mod._LEGACY_PROTOCOL, fh, 2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, fh, 2)
        pickle.dump(obj, fh, 2)
        pickle.dump([], fh, 2)


@pytest.mark.parametrize("where", ["magic", "object", "zip"])
def test_reader_refuses_hostile_pickles(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    evil = _Evil(marker)
    path = tmp_path / "evil.pth"
    if where == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps({"w": evil}, 2))
    elif where == "magic":
        _legacy_file(path, {}, evil_magic=evil)
    else:
        _legacy_file(path, OrderedDict(w=evil))
    with pytest.raises(export_mod.StateDictError, match="refusing global"):
        export_mod.load_state_dict(path)
    assert not marker.exists()


def test_reader_refuses_non_state_dicts(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    _legacy_file(path, ["not", "a", "dict"])
    with pytest.raises(export_mod.StateDictError):
        export_mod.load_state_dict(path)
    path.write_bytes(b"\x80\x02K\x01.")
    with pytest.raises(export_mod.StateDictError, match="magic"):
        export_mod.load_state_dict(path)
    _legacy_file(path, {})
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(export_mod.StateDictError):
        export_mod.load_state_dict(path)


@pytest.fixture
def fake_torch() -> Iterator[types.ModuleType]:
    """Just enough of a ``torch`` module to pickle a state dict the way torch does."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args: Any) -> None:
        raise AssertionError("only pickled, never called")

    for obj in (FloatStorage, LongStorage, _rebuild_tensor_v2):
        obj.__qualname__ = obj.__name__
    FloatStorage.__module__ = LongStorage.__module__ = "torch"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    torch.LongStorage = LongStorage  # type: ignore[attr-defined]
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _FakeStorage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, array


_View = tuple[tuple[int, ...], tuple[int, ...]]


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, view: _View | None) -> None:
        self.storage, self.view = storage, view

    def __reduce__(self) -> tuple[Any, ...]:
        arr = self.storage.array
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        shape, strides = self.view or (arr.shape, tuple(s // arr.itemsize for s in arr.strides))
        return (rebuild, (self.storage, 0, shape, strides, False, OrderedDict()))


def _zip_state_dict(
    path: Path,
    state: dict[str, np.ndarray],
    torch: types.ModuleType,
    view: _View | None = None,
) -> None:
    """Write ``state`` in torch's zip format: data.pkl plus one raw file per storage."""
    storages = [_FakeStorage(str(i), a.copy(order="C")) for i, a in enumerate(state.values())]
    tensors = OrderedDict(
        (name, _FakeTensor(st, view)) for name, st in zip(state, storages, strict=True)
    )

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if not isinstance(obj, _FakeStorage):
                return None
            stype = torch.LongStorage if obj.array.dtype == np.int64 else torch.FloatStorage
            return ("storage", stype, obj.key, "cpu", obj.array.size)

    buf = io.BytesIO()
    _Pickler(buf, 2).dump(tensors)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for st in storages:
            zf.writestr(f"archive/data/{st.key}", st.array.tobytes())


def test_zip_format_reads_like_legacy(tmp_path: Path, fake_torch: types.ModuleType) -> None:
    legacy = export_mod.load_state_dict(export_mod.weights_path())
    assert legacy["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert legacy["_bn0.num_batches_tracked"].shape == ()
    subset = {k: legacy[k] for k in ("_conv_stem.weight", "_fc.bias", "_bn0.num_batches_tracked")}
    path = tmp_path / "small.pth"
    _zip_state_dict(path, subset, fake_torch)
    back = export_mod.load_state_dict(path)
    assert list(back) == list(subset)
    for k, v in subset.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)


def test_export_is_cached_and_atomic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = export_mod.export(tmp_path)
    assert first.name == f"efficientnet-lite0-{file_version(export_mod.weights_path())}.onnx"
    stamp = first.stat().st_mtime_ns
    assert first.stat().st_mode & 0o044 == 0o044
    assert export_mod.main(["--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(first)
    assert first.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]

    import onnx

    model = onnx.load(str(first))
    outputs = {o.name: o for o in model.graph.output}
    assert set(outputs) == {"logits", "embedding"}
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "N"


def test_graph_refuses_mismatched_weights() -> None:
    state = export_mod.load_state_dict(export_mod.weights_path())
    bad = dict(state)
    bad["_fc.weight"] = np.zeros((10, 1280), np.float32)
    with pytest.raises(export_mod.StateDictError, match=r"_fc\.weight"):
        export_mod.build_model(bad)
    extra = dict(state)
    extra["_blocks.16._project_conv.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(export_mod.StateDictError):
        export_mod.build_model(extra)


def test_reader_refuses_tensors_outside_their_storage(
    tmp_path: Path, fake_torch: types.ModuleType
) -> None:
    path = tmp_path / "ok.pth"
    _zip_state_dict(path, {"w": np.arange(4, dtype=np.float32)}, fake_torch)
    assert export_mod.load_state_dict(path)["w"].tolist() == [0, 1, 2, 3]
    views = [((1 << 30, 1 << 30), (0, 0)), ((5,), (1,)), ((2, 2), (3, 1))]
    for shape, strides in views:
        path = tmp_path / "bad.pth"
        _zip_state_dict(path, {"w": np.zeros(4, np.float32)}, fake_torch, view=(shape, strides))
        with pytest.raises(export_mod.StateDictError, match="does not fit"):
            export_mod.load_state_dict(path)
