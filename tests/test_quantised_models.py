"""Int8 copies of the nsfw and labels models: built into the cache once, rebuilt when
damaged or missing, and in agreement with the float models on the offline photos.

Bounds (measured over the 99 offline benign photos, with margin): open_nsfw's P(nsfw)
moves by at most 0.03 (bound 0.05), the combined sexual-content score by 0.014 (bound
0.025), label confidences by 2.5 points (bound 4); labels at policy thresholds (50 and
up) are the same on every photo. EfficientNet-Lite0 in int8 (not the default) keeps the
top-1 class on 87 of 99 photos and 45 of the 47 where float's top-1 is at least 0.3,
probabilities move by up to 0.29 and the embedding's median cosine to float is 0.99.
These hold where int8 runs by default: CPUs whose int8 kernels are exact (x86 with
VNNI); on x86 without VNNI the float models run (see :mod:`bastion.runtime.quantize`).
"""

from __future__ import annotations

import os
import platform
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from bastion.analyzers.base import RuntimeContext
from bastion.analyzers.labels import INT8_RECIPE, LabelsAnalyzer, LabelsConfig, _softmax
from bastion.analyzers.nsfw import (
    OPEN_NSFW,
    OPEN_NSFW_RECIPE,
    NsfwAnalyzer,
    NsfwConfig,
    open_nsfw_path,
)
from bastion.errors import AnalyzerUnavailable
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput
from bastion.runtime import quantize
from bastion.runtime.config import RuntimeConfig
from bastion.runtime.quantize import (
    QuantRecipe,
    calibration_frames,
    int8_recipe,
    quantized_model,
    versioned,
)
from tests.support.analyzer_contract import context
from tests.support.media import benign_photos, opencv_doc_photos

OPEN_NSFW_MAX_DELTA = 0.05
COMBINED_MAX_DELTA = 0.025
LABEL_CONFIDENCE_MAX_DELTA = 4.0
POLICY_FLOOR = 50.0  # the lowest review/block threshold in the default policy


# ---------------------------------------------------------------------------
# The cache, on a tiny model (fast)


def _tiny_model(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    fc = rng.normal(size=(4, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class _Calibration:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> list[npt.NDArray[np.float32]]:
        self.calls += 1
        rng = np.random.default_rng(1)
        return [rng.uniform(0, 1, size=(1, 3, 16, 16)).astype(np.float32) for _ in range(4)]


RECIPE = QuantRecipe(method="minmax")


def _runs(model: Path | bytes) -> None:
    source = str(model) if isinstance(model, Path) else model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((2, 3, 16, 16), np.float32)})
    assert y.shape == (2, 4)


def test_built_once_then_served_from_the_cache(tmp_path: Path) -> None:
    source = _tiny_model(tmp_path / "tiny.onnx")
    calib = _Calibration()
    first = quantized_model(source, tmp_path / "cache", "tiny", calib, RECIPE)
    assert isinstance(first, Path) and quantize.is_valid(first)
    assert first.parent == tmp_path / "cache" / "int8" and RECIPE.key in first.name
    assert first.with_suffix(".json").is_file()
    _runs(first)
    stamp = first.stat().st_mtime_ns
    again = quantized_model(source, tmp_path / "cache", "tiny", calib, RECIPE)
    assert again == first and first.stat().st_mtime_ns == stamp
    assert calib.calls == 1  # calibration inputs are only made for a build
    assert [p.name for p in first.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "no-record"])
def test_damaged_or_missing_copy_is_rebuilt(tmp_path: Path, damage: str) -> None:
    source = _tiny_model(tmp_path / "tiny.onnx")
    built = quantized_model(source, tmp_path, "tiny", _Calibration(), RECIPE)
    assert isinstance(built, Path)
    if damage == "garbage":
        built.write_bytes(b"not an onnx model")
    elif damage == "truncated":
        built.write_bytes(built.read_bytes()[:100])
    elif damage == "missing":
        built.unlink()
    else:
        built.with_suffix(".json").unlink()
    assert not quantize.is_valid(built)
    calib = _Calibration()
    rebuilt = quantized_model(source, tmp_path, "tiny", calib, RECIPE)
    assert rebuilt == built and quantize.is_valid(built) and calib.calls == 1
    _runs(rebuilt)


def test_new_source_or_recipe_gets_its_own_file(tmp_path: Path) -> None:
    a = quantized_model(_tiny_model(tmp_path / "a.onnx"), tmp_path, "tiny", _Calibration(), RECIPE)
    b = quantized_model(
        _tiny_model(tmp_path / "b.onnx", seed=1), tmp_path, "tiny", _Calibration(), RECIPE
    )
    other = QuantRecipe(method="percentile")
    c = quantized_model(tmp_path / "a.onnx", tmp_path, "tiny", _Calibration(), other)
    assert len({a, b, c}) == 3
    assert RECIPE.key != other.key and RECIPE.tag.startswith("int8-")


def _weight_range(model: Path | bytes) -> int:
    """The largest absolute int8 weight in a quantised model."""
    proto = onnx.load(str(model)) if isinstance(model, Path) else onnx.load_from_string(model)
    weights = [
        numpy_helper.to_array(t)
        for t in proto.graph.initializer
        if t.data_type == TensorProto.INT8 and t.dims
    ]
    assert weights
    return max(int(np.abs(w.astype(np.int16)).max()) for w in weights)


def test_seven_bit_weights_are_their_own_file_within_seven_bits(tmp_path: Path) -> None:
    source = _tiny_model(tmp_path / "tiny.onnx")
    seven = QuantRecipe(method="minmax", weight_bits=7)
    eight = quantized_model(source, tmp_path, "tiny", _Calibration(), RECIPE)
    narrow = quantized_model(source, tmp_path, "tiny", _Calibration(), seven)
    assert eight != narrow and seven.key != RECIPE.key
    assert _weight_range(eight) > 64  # per-channel weights use the whole int8 range
    assert _weight_range(narrow) <= 64
    _runs(narrow)


def test_weight_width_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def cpu(machine: str, *flags: str) -> None:
        monkeypatch.setattr(platform, "machine", lambda: machine)
        monkeypatch.setattr(quantize, "_cpu_flags", lambda: frozenset(flags))

    cpu("x86_64", "avx2", "fma")  # int8 products summed in 16 bits: saturates
    assert quantize.weight_bits() is None
    assert int8_recipe(RECIPE, RuntimeConfig(providers=["cpu"])) is None  # float runs
    assert quantize.weight_bits("8bit") == 8 and quantize.weight_bits("7bit") == 7
    forced = int8_recipe(RECIPE, RuntimeConfig(providers=["cpu"], int8_weights="7bit"))
    assert forced == QuantRecipe(method="minmax", weight_bits=7)
    for vnni in ("avx512_vnni", "avx_vnni", "amx_int8"):
        cpu("x86_64", "avx2", vnni)
        assert quantize.weight_bits() == 8
        assert int8_recipe(RECIPE, RuntimeConfig(providers=["cpu"])) == RECIPE
    cpu("x86_64")  # flags unknown: not known to be exact
    assert quantize.weight_bits() is None
    cpu("aarch64")
    assert quantize.weight_bits() == 8


def test_cpu_flags_are_read_where_linux_lists_them() -> None:
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = quantize._cpu_flags()
    assert flags and all(f == f.strip() and f for f in flags)
    if platform.machine() == "x86_64":
        assert {"sse2", "avx"} <= flags


def test_unwritable_cache_builds_in_memory(tmp_path: Path) -> None:
    source = _tiny_model(tmp_path / "tiny.onnx")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    model = quantized_model(source, blocker / "cache", "tiny", _Calibration(), RECIPE)
    assert isinstance(model, bytes)
    _runs(model)


def test_unquantisable_model_is_an_analyzer_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(AnalyzerUnavailable):
        quantized_model(bad, tmp_path, "bad", _Calibration(), RECIPE)
    assert not any((tmp_path / "int8").iterdir())


def test_calibration_frames_are_fixed_photos() -> None:
    frames = calibration_frames()
    assert len(frames) == 16
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, calibration_frames(), strict=True))


# ---------------------------------------------------------------------------
# The real models


@cache
def offline_photos() -> dict[str, np.ndarray]:
    """Every benign photo available offline: scikit-image, scikit-learn and opencv-doc."""
    photos = dict(benign_photos())
    for path in opencv_doc_photos():
        photos[f"opencv-{path.stem}"] = np.asarray(Image.open(path).convert("RGB"))
    return photos


@cache
def nsfw(precision: str) -> NsfwAnalyzer:
    cfg = NsfwConfig() if precision == "default" else NsfwConfig(open_nsfw_precision="float32")
    analyzer = NsfwAnalyzer(cfg, context())
    analyzer.load()
    return analyzer


@cache
def labels(precision: Literal["float32", "int8"]) -> LabelsAnalyzer:
    analyzer = LabelsAnalyzer(LabelsConfig(precision=precision), context())
    analyzer.load()
    return analyzer


def _nsfw_pair(names: list[str]) -> list[tuple[str, AnalyzerOutput, AnalyzerOutput]]:
    photos = offline_photos()
    fl, q8 = nsfw("float32"), nsfw("default")
    inputs = [fl.preprocess(Frame(rgb=photos[n])) for n in names]
    return list(zip(names, fl.analyze(inputs), q8.analyze(inputs), strict=True))


def _check_nsfw_agreement(names: list[str]) -> None:
    for name, f, q in _nsfw_pair(names):
        assert abs(f.extra["open_nsfw"] - q.extra["open_nsfw"]) <= OPEN_NSFW_MAX_DELTA, name
        assert abs(f.extra["combined"] - q.extra["combined"]) <= COMBINED_MAX_DELTA, name
        # image-safety-classifier-s stays float by default: its scores are untouched
        assert f.extra["calibrated"] == pytest.approx(q.extra["calibrated"], abs=1e-6), name
        assert _at_policy(f) == _at_policy(q), name
        fc = {lab.name: lab.confidence for lab in f.labels}
        qc = {lab.name: lab.confidence for lab in q.labels}
        for label in fc.keys() & qc.keys():
            assert abs(fc[label] - qc[label]) <= LABEL_CONFIDENCE_MAX_DELTA, (name, label)
        # a label only one precision reports sits at the min_confidence floor
        for label in fc.keys() ^ qc.keys():
            assert max(fc.get(label, 0), qc.get(label, 0)) < 10 + LABEL_CONFIDENCE_MAX_DELTA


def _at_policy(out: AnalyzerOutput) -> list[str]:
    return sorted(lab.name for lab in out.labels if lab.confidence >= POLICY_FLOOR)


@pytest.mark.models
def test_open_nsfw_int8_is_the_default_and_agrees_on_camera_photos() -> None:
    assert NsfwConfig().open_nsfw_precision == "int8"
    assert NsfwConfig().safety_precision == "float32"
    # int8 where this CPU's int8 kernels are exact; elsewhere the float model runs
    exact = quantize.weight_bits() is not None
    assert ("int8" in nsfw("default").model_versions()[OPEN_NSFW]) == exact
    _check_nsfw_agreement(list(benign_photos()))


@pytest.mark.models
@pytest.mark.slow
def test_open_nsfw_int8_agrees_on_every_offline_photo() -> None:
    names = list(offline_photos())
    assert len(names) >= 8
    _check_nsfw_agreement(names)


@pytest.mark.models
def test_versions_name_the_precision() -> None:
    forced = RuntimeContext(RuntimeConfig(int8_weights="8bit"))  # int8 on any CPU
    fl = NsfwAnalyzer(NsfwConfig(open_nsfw_precision="float32"), forced)
    q8 = NsfwAnalyzer(NsfwConfig(), forced)
    assert fl.version != q8.version
    assert "int8" in q8.model_versions()[OPEN_NSFW]
    assert "int8" not in fl.model_versions()[OPEN_NSFW]
    assert fl.version == nsfw("float32").version
    # the default settings run what this CPU does exactly, and say so
    exact = quantize.weight_bits() is not None
    assert nsfw("default").version == (q8.version if exact else fl.version)
    lf, lq = labels("float32"), labels("int8")
    assert lq.recipe == int8_recipe(INT8_RECIPE, RuntimeConfig()) and lf.recipe is None
    assert lq.version == versioned(lf.version, lq.recipe)  # lf.version: the float weights'
    int8 = LabelsConfig(precision="int8")
    seven = LabelsAnalyzer(int8, RuntimeContext(RuntimeConfig(int8_weights="7bit")))
    eight = LabelsAnalyzer(int8, RuntimeContext(RuntimeConfig(int8_weights="8bit")))
    assert seven.version != eight.version
    assert eight.version == f"{lf.version}-{INT8_RECIPE.tag}"  # 8 bits: the key it always had


@pytest.mark.models
def test_int8_settings_run_float_where_a_gpu_provider_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )

    def analyzers(**runtime: Any) -> tuple[NsfwAnalyzer, LabelsAnalyzer]:
        ctx = RuntimeContext(RuntimeConfig(cache_dir=tmp_path, **runtime))
        return NsfwAnalyzer(NsfwConfig(), ctx), LabelsAnalyzer(LabelsConfig(precision="int8"), ctx)

    on_gpu, labels_on_gpu = analyzers()
    assert on_gpu._recipe(OPEN_NSFW) is None and labels_on_gpu.recipe is None
    assert "int8" not in on_gpu.model_versions()[OPEN_NSFW]
    assert on_gpu.version == nsfw("float32").version  # the float model's results and cache
    kept, labels_kept = analyzers(int8_on_gpu=True, int8_weights="7bit")
    assert kept._recipe(OPEN_NSFW) == replace(OPEN_NSFW_RECIPE, weight_bits=7)
    assert labels_kept.recipe == replace(INT8_RECIPE, weight_bits=7)
    cpu_only, labels_cpu = analyzers(providers=["cpu"], int8_weights="7bit")
    assert "int8" in cpu_only.model_versions()[OPEN_NSFW] and labels_cpu.recipe is not None


@pytest.mark.models
@pytest.mark.slow
def test_labels_int8_agrees_with_float_within_its_bounds() -> None:
    photos = offline_photos()
    lf, lq = labels("float32"), labels("int8")
    assert (lq.recipe is not None) == (quantize.weight_bits() is not None)
    x = np.stack([lf.preprocess(Frame(rgb=photos[n])) for n in photos])

    def run(a: LabelsAnalyzer) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        session = a._session
        probs, embs = [], []
        for i in range(0, len(x), 8):
            logits, emb = session.run(None, {session.get_inputs()[0].name: x[i : i + 8]})
            probs.append(_softmax(np.asarray(logits, np.float64)))
            embs.append(np.asarray(emb, np.float32))
        return np.concatenate(probs), np.concatenate(embs)

    pf, ef = run(lf)
    pq, eq = run(lq)
    agree = pf.argmax(1) == pq.argmax(1)
    sure = pf.max(1) >= 0.3
    assert agree.mean() >= 0.8
    assert agree[sure].mean() >= 0.9
    assert np.abs(pf - pq).max() <= 0.4
    cos = (ef * eq).sum(1) / np.linalg.norm(ef, axis=1) / np.linalg.norm(eq, axis=1)
    assert np.median(cos) >= 0.97
    for f, q in zip(lf.analyze(list(x)), lq.analyze(list(x)), strict=True):
        assert _at_policy(f) == _at_policy(q)


@pytest.mark.models
def test_damaged_cached_int8_model_is_rebuilt_by_the_analyzer(tmp_path: Path) -> None:
    # int8 whatever this CPU (the default runs float on x86 CPUs without VNNI)
    forced = RuntimeContext(RuntimeConfig(cache_dir=tmp_path, int8_weights="8bit"))
    first = NsfwAnalyzer(NsfwConfig(), forced)
    first.load()
    (built,) = (tmp_path / "int8").glob("open-nsfw-*.onnx")
    source = open_nsfw_path()
    assert source is not None and built.stat().st_size < source.stat().st_size / 2
    built.write_bytes(built.read_bytes()[: built.stat().st_size // 2])
    os.utime(built, (0, 0))

    again = NsfwAnalyzer(NsfwConfig(), forced)
    again.load()  # would raise on the truncated file if it were loaded as is
    assert quantize.is_valid(built) and built.stat().st_mtime > 0
    photo = Frame(rgb=benign_photos()["skimage-astronaut"])
    (out,) = again.analyze([again.preprocess(photo)])
    (ref,) = first.analyze([first.preprocess(photo)])
    assert out.extra["open_nsfw"] == pytest.approx(ref.extra["open_nsfw"], abs=1e-6)
