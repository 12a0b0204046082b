"""An image classifier from any ONNX file, set up by configuration alone.

Describe the model's input (size, resize style, NCHW/NHWC, RGB/BGR, scale, mean, std)
and output (class names, softmax/sigmoid or none), map class names to taxonomy labels
in ``class_map``, and each frame gets its top classes as tags and the mapped classes as
labels. Pixels are resized with Pillow, as torchvision and most training code do.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import Field, field_validator, model_validator

from bastion.analyzers.base import AnalyzerConfig, RuntimeContext
from bastion.media.types import Frame
from bastion.models.onnx_file import ModelFileAnalyzer, ModelFileConfig
from bastion.policy import taxonomy
from bastion.results import AnalyzerOutput, Label, Tag

FloatArray = npt.NDArray[np.float32]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# Above this many classes only mapped classes go into ``extra['scores']``.
_ALL_SCORES_MAX = 32


class OnnxClassifierConfig(ModelFileConfig):
    type: Literal["onnx_classifier"] = "onnx_classifier"
    input_size: int | tuple[int, int] = Field(
        224, description="Model input side, or (height, width)."
    )
    resize: Literal["stretch", "shorter_side", "letterbox"] = Field(
        "shorter_side",
        description="stretch: resize to resize_to (or the input size) ignoring aspect; "
        "shorter_side: scale the shorter side to resize_to (or the input side); letterbox: "
        "fit inside the input and pad. Anything larger than the input is centre-cropped.",
    )
    resize_to: int | None = Field(
        None,
        ge=1,
        description="Side before the centre crop (e.g. 256 for a 224 crop); default: the "
        "input size, i.e. no crop.",
    )
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] = Field(
        "bilinear", description="Pillow resampling filter."
    )
    pad_value: int = Field(0, ge=0, le=255, description="Grey level of letterbox padding.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Input tensor layout.")
    channel_order: Literal["RGB", "BGR"] = Field("RGB", description="Channel order of the input.")
    scale: float = Field(
        1 / 255, description="Pixels (0–255) are multiplied by this before mean and std."
    )
    mean: tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406),
        description="Subtracted per channel after scaling, in the model's channel order.",
    )
    std: tuple[float, float, float] = Field(
        (0.229, 0.224, 0.225),
        description="Divides each channel after the mean, in the model's channel order.",
    )
    activation: Literal["none", "softmax", "sigmoid"] = Field(
        "softmax",
        description="Applied to the output: softmax (single-label logits), sigmoid "
        "(multi-label logits) or none (the model already outputs probabilities).",
    )
    output_index: int = Field(0, ge=0, description="Which model output holds the scores.")
    class_names: list[str] = Field(
        default_factory=list,
        description="Class names in output order; default: class_0, class_1, ...",
    )
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="Class name -> taxonomy label; a label scores the highest of its classes.",
    )
    top_k: int = Field(5, ge=0, le=100, description="Most classes reported as tags.")
    min_tag_confidence: float = Field(
        5.0, ge=0, le=100, description="Smallest class score (0–100) reported as a tag."
    )
    min_label_confidence: float = Field(
        1.0, ge=0, le=100, description="Labels scoring below this (0–100) are left out."
    )

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in value):
            raise ValueError("std must not contain zeros")
        return value

    @model_validator(mode="after")
    def _mapped_classes_exist(self) -> OnnxClassifierConfig:
        if self.class_names:
            unknown = sorted(set(self.class_map) - set(self.class_names))
            if unknown:
                raise ValueError(f"class_map names classes not in class_names: {unknown}")
        return self

    def size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        if isinstance(self.input_size, int):
            return self.input_size, self.input_size
        return int(self.input_size[0]), int(self.input_size[1])


def _fit(img: Image.Image, cfg: OnnxClassifierConfig) -> Image.Image:
    """Resize (and centre-crop or pad) an RGB image to the model's input size."""
    h, w = cfg.size()
    resample = _RESAMPLE[cfg.interpolation]
    if cfg.resize == "letterbox":
        ratio = min(w / img.width, h / img.height)
        new = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
        fitted = img.resize(new, resample)
        canvas = Image.new("RGB", (w, h), (cfg.pad_value,) * 3)
        canvas.paste(fitted, ((w - new[0]) // 2, (h - new[1]) // 2))
        return canvas
    if cfg.resize == "stretch":
        side = cfg.resize_to
        new = (max(w, side), max(h, side)) if side else (w, h)
    else:
        side = cfg.resize_to or min(w, h)
        ratio = side / min(img.width, img.height)
        new = (max(w, round(img.width * ratio)), max(h, round(img.height * ratio)))
    if new != img.size:
        img = img.resize(new, resample)
    if img.size != (w, h):
        left, top = (img.width - w) // 2, (img.height - h) // 2
        img = img.crop((left, top, left + w, top + h))
    return img


def _activate(scores: npt.NDArray[np.float64], activation: str) -> npt.NDArray[np.float64]:
    if activation == "softmax":
        z = np.exp(scores - scores.max(axis=1, keepdims=True))
        result: npt.NDArray[np.float64] = z / z.sum(axis=1, keepdims=True)
        return result
    if activation == "sigmoid":
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-scores))
        return out
    return scores


class OnnxClassifierAnalyzer(ModelFileAnalyzer[OnnxClassifierConfig, FloatArray]):
    """Top classes (tags) and mapped labels from a configured ONNX image classifier."""

    kind: ClassVar[str] = "onnx_classifier"
    input: ClassVar[str] = "RGB/BGR frame resized, scaled and normalised as configured"
    default_model_name: ClassVar[str] = "onnx-classifier"
    config_model: ClassVar[type[AnalyzerConfig]] = OnnxClassifierConfig
    emits: ClassVar[tuple[str, ...]] = ("labels", "tags")

    def __init__(self, config: OnnxClassifierConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._session: Any = None
        self._lock = threading.Lock()
        scale = np.float32(config.scale)
        self._scale = scale
        self._mean = np.asarray(config.mean, dtype=np.float32)
        self._std = np.asarray(config.std, dtype=np.float32)

    @property
    def provider(self) -> str | None:
        return None if self._session is None else str(self._session.get_providers()[0])

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            from bastion.runtime.onnx import create_session

            path = self.model_file()
            self._session = create_session(path, self.context.runtime)

    def preprocess(self, frame: Frame) -> FloatArray:
        cfg = self.config
        img = Image.fromarray(np.ascontiguousarray(frame.rgb[..., :3], dtype=np.uint8), "RGB")
        arr = np.asarray(_fit(img, cfg), dtype=np.float32)
        if cfg.channel_order == "BGR":
            arr = arr[..., ::-1]
        arr = (arr * self._scale - self._mean) / self._std
        if cfg.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        return np.ascontiguousarray(arr, dtype=np.float32)

    def analyze(self, batch: Sequence[FloatArray]) -> list[AnalyzerOutput]:
        if not batch:
            return []
        self.load()
        cfg = self.config
        name = self._session.get_inputs()[0].name
        outputs: list[AnalyzerOutput] = []
        for start in range(0, len(batch), cfg.max_batch_size):
            x = np.stack(batch[start : start + cfg.max_batch_size])
            raw = np.asarray(self._session.run(None, {name: x})[cfg.output_index])
            scores = _activate(raw.reshape(raw.shape[0], -1).astype(np.float64), cfg.activation)
            outputs.extend(self._output(row) for row in scores)
        return outputs

    def _names(self, count: int) -> list[str]:
        names = list(self.config.class_names)
        return names + [f"class_{i}" for i in range(len(names), count)]

    def _output(self, scores: npt.NDArray[np.float64]) -> AnalyzerOutput:
        cfg = self.config
        names = self._names(scores.shape[0])
        tags: list[Tag] = []
        for i in np.argsort(-scores, kind="stable")[: cfg.top_k]:
            confidence = 100.0 * float(scores[i])
            if confidence >= cfg.min_tag_confidence:
                tags.append(
                    Tag(
                        name=names[i],
                        confidence=round(min(100.0, max(0.0, confidence)), 2),
                        analyzer=self.name,
                        version=self.version,
                    )
                )
        best: dict[str, tuple[float, str]] = {}
        for cls, label in cfg.class_map.items():
            if cls in names:
                score = float(scores[names.index(cls)])
                if label not in best or score > best[label][0]:
                    best[label] = (score, cls)
        labels: list[Label] = [
            taxonomy.label(
                label,
                100.0 * score,
                analyzer=self.name,
                model=self.model_name,
                version=self.version,
                source=cls,
            )
            for label, (score, cls) in best.items()
            if 100.0 * score >= cfg.min_label_confidence
        ]
        labels.sort(key=lambda lab: -lab.confidence)
        shown = names if len(names) <= _ALL_SCORES_MAX else list(cfg.class_map)
        extra = {
            "scores": {n: round(float(scores[names.index(n)]), 6) for n in shown if n in names}
        }
        return AnalyzerOutput(labels=labels, tags=tags, extra=extra)
