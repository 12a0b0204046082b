"""A YOLO object detector from any ONNX file, set up by configuration alone.

Point ``model_path`` at an Ultralytics YOLOv5/v8/v11 export (a weapon, cigarette or logo
model), map its class names to taxonomy labels in ``class_map`` and every detection
comes back as a tag with a box; detections of mapped classes also come back as labels.
Class names and input size are read from the export's metadata when not configured.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig, RuntimeContext
from bastion.errors import AnalyzerUnavailable
from bastion.media.types import Frame
from bastion.models import yolo
from bastion.models.detection import DetectionConfig, detect_batch
from bastion.models.onnx_file import ModelFileAnalyzer, ModelFileConfig
from bastion.results import AnalyzerOutput


class OnnxDetectorConfig(ModelFileConfig, DetectionConfig):
    type: Literal["onnx_detector"] = "onnx_detector"
    input_size: int | tuple[int, int] | None = Field(
        None,
        description="Model input side, or (height, width); default: the model's fixed size, "
        "else the export's 'imgsz' metadata, else 640.",
    )
    class_names: list[str] = Field(
        default_factory=list,
        description="Class names in output order; default: the export's 'names' metadata, "
        "else class_0, class_1, ...",
    )
    class_map: dict[str, str] = Field(
        default_factory=dict,
        description="Class name -> taxonomy label emitted (with its box) for each detection.",
    )
    layout: yolo.Layout = Field(
        "auto",
        description="Output layout: v8 ([N, 4+C, A], boxes then class scores), v5 "
        "([N, A, 5+C], boxes, objectness, class scores) or auto (from the output shape).",
    )
    letterbox: yolo.LetterboxMode = Field(
        "center",
        description="center: resize to fit and pad both sides (Ultralytics); top_left: pad "
        "right and bottom to the model's aspect ratio, then resize (NudeNet).",
    )
    pad_value: int = Field(114, ge=0, le=255, description="Grey level of the letterbox padding.")
    channel_order: Literal["RGB", "BGR"] = Field(
        "RGB", description="Channel order the model expects (Ultralytics exports: RGB)."
    )


class OnnxDetectorAnalyzer(ModelFileAnalyzer[OnnxDetectorConfig, yolo.Letterboxed]):
    """Detections (tags with boxes) and mapped labels from a configured YOLO ONNX model."""

    kind: ClassVar[str] = "onnx_detector"
    input: ClassVar[str] = "RGB/BGR frame letterboxed to the model's input size, 0–1"
    default_model_name: ClassVar[str] = "onnx-detector"
    config_model: ClassVar[type[AnalyzerConfig]] = OnnxDetectorConfig
    emits: ClassVar[tuple[str, ...]] = ("labels", "tags")

    def __init__(self, config: OnnxDetectorConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._runner: yolo.YoloRunner | None = None
        self._lock = threading.Lock()

    @property
    def provider(self) -> str | None:
        return None if self._runner is None else self._runner.provider

    def load(self) -> None:
        with self._lock:
            if self._runner is not None:
                return
            from bastion.runtime.onnx import create_session

            path = self.model_file()
            runner = yolo.YoloRunner(
                create_session(path, self.context.runtime),
                input_size=self.config.input_size,
                class_names=self.config.class_names,
                layout=self.config.layout,
            )
            unknown = sorted(set(self.config.class_map) - set(runner.names)) if runner.names else []
            if unknown:
                raise AnalyzerUnavailable(
                    f"{self.name}: class_map names classes the model lacks: {unknown}"
                )
            self._runner = runner

    def _loaded(self) -> yolo.YoloRunner:
        if self._runner is None:
            self.load()
        assert self._runner is not None
        return self._runner

    def preprocess(self, frame: Frame) -> yolo.Letterboxed:
        cfg = self.config
        return yolo.prepare(
            frame.rgb,
            self._loaded().size,
            mode=cfg.letterbox,
            pad_value=cfg.pad_value,
            bgr=cfg.channel_order == "BGR",
        )

    def analyze(self, batch: Sequence[yolo.Letterboxed]) -> list[AnalyzerOutput]:
        runner = self._loaded()
        return detect_batch(
            runner,
            batch,
            self.config,
            runner.names,
            self.config.class_map,
            analyzer=self.name,
            model=self.model_name,
            version=self.version,
        )
