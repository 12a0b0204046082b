"""Int8 copies of ONNX models, built once into the runtime cache.

:func:`quantized_model` turns a float ONNX model into a statically quantised one with
onnxruntime's quantiser: QDQ format (measured faster than QOperator on x86 CPUs with
VNNI), per-channel int8 weights, uint8 activations whose ranges come from running the
float model over calibration inputs. The result is written to
``<cache_dir>/int8/<name>-<source sha256>-<recipe key>.onnx`` with a ``.json`` record
beside it holding the file's own sha256, so a new source model or a changed recipe gets
a new file, and a truncated or altered one is noticed and rebuilt rather than loaded.
A read-only cache gets the model built in memory instead.

Int8 runs where the CPU's int8 dot products are exact: x86 CPUs with VNNI (or AMX), and
CPUs that are not x86 (:func:`weight_bits`). The AVX2 kernels of x86 CPUs without VNNI
add pairs of uint8 x int8 products in 16 bits, which saturates with full-range weights:
measured on such a CPU, open_nsfw's score moved by up to 0.075 on the offline photos
(bound 0.05) and the labels model kept its top-1 class on 2/3 of them (bound 80 %).
The quantiser's cure, 7-bit weights (``reduce_range``), is exact there but loses
precision everywhere: open_nsfw moved by up to 0.0498 and the labels model kept its
top-1 on 72 % of the photos. So on such CPUs analyzers set to int8 run their float
model unless ``runtime.int8_weights`` forces ``7bit`` (or ``8bit``); each width is its
own cached model and version, and 8-bit recipes keep the keys they always had.

Calibration inputs are only made when a build is needed. :func:`calibration_frames`
gives the photos the bundled analyzers calibrate on: the two sample photos that ship
inside scikit-learn (a main dependency, so they are present wherever Bastion runs),
as whole frames, halves, quarters, a centre crop, a mirror image and greyscale,
sixteen frames in all. Being fixed, they make the same int8 model on every machine
of one weight width.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from bastion.errors import AnalyzerUnavailable
from bastion.media.digest import source_sha256
from bastion.runtime.config import Int8Weights, RuntimeConfig
from bastion.runtime.onnx import gpu_configured

log = logging.getLogger(__name__)

RECIPE_VERSION = 1
"""Raised whenever the way models are quantised changes, so every cached copy is rebuilt."""

CALIBRATION_SET = "sklearn-sample-photos-16"
_QDQ_MIN_OPSET = 13  # per-channel DequantizeLinear needs the ``axis`` attribute

Calibration = Callable[[], Sequence[npt.NDArray[np.float32]]]
"""Makes the calibration inputs: one array per model call, batch dimension included."""

_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where it does not); read once."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def weight_bits(setting: Int8Weights = "auto") -> Literal[7, 8] | None:
    """Bits of int8 weights on this CPU: 8 where its int8 dot products are exact, None
    (run the float model) on x86 without VNNI or where the flags cannot be read;
    ``8bit``/``7bit`` force one."""
    if setting != "auto":
        return 8 if setting == "8bit" else 7
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return 8  # the 16-bit sums are x86's AVX2 kernels' alone
    return 8 if _cpu_flags() & _VNNI_FLAGS else None


@dataclass(frozen=True, slots=True)
class QuantRecipe:
    """How one model is quantised; every field is part of its cache key.

    ``method`` picks the activation ranges: ``percentile`` (99.999th percentile of the
    calibration activations, robust to one outlying frame; slower to calibrate) or
    ``minmax``. ``op_types`` limits quantisation to these operator types (empty: all
    that onnxruntime's quantiser supports). ``calibration`` names the calibration set.
    ``weight_bits`` is 8, or 7 (the quantiser's ``reduce_range``; see the module notes).
    """

    method: Literal["percentile", "minmax"] = "percentile"
    op_types: tuple[str, ...] = ()
    calibration: str = CALIBRATION_SET
    weight_bits: Literal[7, 8] = 8

    @property
    def key(self) -> str:
        """Short hash of the recipe and :data:`RECIPE_VERSION`."""
        fields: dict[str, Any] = asdict(self)
        fields["op_types"] = list(self.op_types)
        if self.weight_bits == 8:  # 8-bit recipes keep the keys they had before the field
            del fields["weight_bits"]
        text = json.dumps({"recipe": RECIPE_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def tag(self) -> str:
        """What an analyzer adds to its version when it runs this recipe's model."""
        return f"int8-{self.key}"


def int8_recipe(recipe: QuantRecipe, runtime: RuntimeConfig) -> QuantRecipe | None:
    """The recipe an analyzer set to int8 runs with under ``runtime`` (its weights as wide
    as :func:`weight_bits` says), or None for its float model: on CPUs whose int8 kernels
    are not exact, and where a GPU provider is configured unless ``runtime.int8_on_gpu``."""
    if not runtime.int8_on_gpu and gpu_configured(runtime):
        return None
    bits = weight_bits(runtime.int8_weights)
    return None if bits is None else replace(recipe, weight_bits=bits)


def versioned(version: str, recipe: QuantRecipe | None) -> str:
    """A model's version with the int8 recipe it runs with (None: it runs in float)."""
    return version if recipe is None else f"{version}-{recipe.tag}"


def quantized_path(cache_dir: Path, name: str, source_version: str, recipe: QuantRecipe) -> Path:
    """Where the int8 copy of a model with this sha256 (leading hex digits) is cached."""
    return cache_dir / "int8" / f"{name}-{source_version[:12]}-{recipe.key}.onnx"


def _record_path(model: Path) -> Path:
    return model.with_suffix(".json")


def is_valid(model: Path) -> bool:
    """Whether ``model`` exists and still has the sha256 its record says it was built with."""
    try:
        record = json.loads(_record_path(model).read_text(encoding="utf-8"))
        return isinstance(record, dict) and record.get("sha256") == source_sha256(model)
    except (OSError, ValueError):
        return False


def quantized_model(
    source: Path,
    cache_dir: Path,
    name: str,
    calibration: Calibration,
    recipe: QuantRecipe,
    *,
    source_version: str | None = None,
) -> Path | bytes:
    """The int8 copy of ``source``, built into the cache unless a valid one is there.

    ``source_version`` is the source's sha256 (or its leading hex digits) when the caller
    has it already. Returns the cached file, or the model's bytes when the cache cannot
    be written.
    Raises :class:`~bastion.errors.AnalyzerUnavailable` when the model cannot be
    quantised (the float model stays available through the analyzer's precision setting).
    """
    digest = source_version or source_sha256(source)
    target = quantized_path(cache_dir, name, digest, recipe)
    if is_valid(target):
        return target
    if target.exists():
        log.warning("cached int8 model %s is damaged or unrecorded; rebuilding it", target.name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.stem}.", dir=target.parent))
    except OSError:  # read-only cache: build in a private folder and keep it in memory
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / target.name
            _build(source, out, calibration, recipe)
            return out.read_bytes()
    try:
        out = work / target.name
        _build(source, out, calibration, recipe)
        os.chmod(out, 0o644)  # the cache is shared with the service
        record = {
            "source": source.name,
            "source_version": digest,
            "recipe": {"version": RECIPE_VERSION, **asdict(recipe)},
            "sha256": source_sha256(out),
        }
        rec = _record_path(out)
        rec.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.chmod(rec, 0o644)
        # the model first, then its record: a reader never sees a record for a half file
        os.replace(out, target)
        os.replace(rec, _record_path(target))
    finally:
        for leftover in work.iterdir():
            leftover.unlink(missing_ok=True)
        work.rmdir()
    return target


def _build(source: Path, out: Path, calibration: Calibration, recipe: QuantRecipe) -> None:
    try:
        _quantize(source, out, calibration, recipe)
    except Exception as exc:  # the quantiser's failures are many and untyped
        raise AnalyzerUnavailable(
            f"could not quantise {source.name} to int8: {exc}; use float32 precision"
        ) from exc


def _quantize(source: Path, out: Path, calibration: Calibration, recipe: QuantRecipe) -> None:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(f"{out.stem}.prepared.onnx")
    try:  # shape inference and constant folding first, as onnxruntime recommends
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference does not know every graph
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    model = onnx.load(str(prepared))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _QDQ_MIN_OPSET:
        model = version_converter.convert_version(model, _QDQ_MIN_OPSET)
    for i, node in enumerate(model.graph.node):
        if not node.name:  # the quantiser names its nodes after these
            node.name = f"{node.op_type}_{i}"
    onnx.save(model, str(prepared))
    input_name = model.graph.input[0].name
    del model

    inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in calibration()]
    if not inputs:
        raise ValueError("no calibration inputs")

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = iter(inputs)

        def get_next(self) -> dict[str, Any] | None:
            item = next(self._items, None)
            return None if item is None else {input_name: item}

    method = {
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
    }[recipe.method]
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):  # the calibrator prints its progress
        quantize_static(
            str(prepared),
            str(out),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            reduce_range=recipe.weight_bits == 7,
            calibrate_method=method,
            op_types_to_quantize=list(recipe.op_types) or None,
        )
    log.debug("quantised %s: %s", source.name, chatter.getvalue().strip())
    prepared.unlink(missing_ok=True)


@cache
def _sample_photos() -> tuple[npt.NDArray[np.uint8], ...]:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise AnalyzerUnavailable("int8 calibration needs the scikit-learn sample photos")
    folder = Path(spec.origin).parent / "datasets" / "images"
    photos = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as img:
            photos.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
    if not photos:
        raise AnalyzerUnavailable("int8 calibration needs the scikit-learn sample photos")
    return tuple(photos)


def calibration_frames() -> list[npt.NDArray[np.uint8]]:
    """The calibration photos as RGB uint8 frames (see the module notes)."""
    frames: list[npt.NDArray[np.uint8]] = []
    for img in _sample_photos():
        h, w = img.shape[:2]
        grey = np.repeat(img.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
        frames += [
            img,
            img[:, ::-1],
            img[: h // 2, : w // 2],
            img[: h // 2, w // 2 :],
            img[h // 2 :, : w // 2],
            img[h // 2 :, w // 2 :],
            img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4],
            grey,
        ]
    return [np.ascontiguousarray(f) for f in frames]
