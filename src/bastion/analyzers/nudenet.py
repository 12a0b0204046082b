"""Body-part detection with NudeNet's YOLOv8n (``320n.onnx``), an optional extra.

NudeNet is AGPL-3.0, so it is not a core dependency: ``pip install bastion[nudenet]``.
Only its weights file is used; preprocessing matches NudeNet's ``NudeDetector`` (pad
right and bottom with black to a square, resize to 320, RGB scaled to 0–1) and so does
post-processing (score ≥ 0.25, class-agnostic NMS at IoU 0.45). Exposed body parts map
to Explicit Nudity labels, covered ones to Suggestive labels, each with its box; faces,
bellies, armpits and feet are tags only.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, RuntimeContext, file_version
from bastion.errors import AnalyzerUnavailable
from bastion.media.types import Frame
from bastion.models import yolo
from bastion.models.detection import DetectionConfig, detect_batch
from bastion.policy import taxonomy
from bastion.results import AnalyzerOutput

MODEL_FILE = "320n.onnx"
MODEL_NAME = "nudenet-320n"

# NudeNet 3.4's classes in output order (also in the export's metadata).
CLASSES: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

# Class -> taxonomy label; classes left out (faces, bellies, armpits, feet, covered
# buttocks) are reported as tags only.
DEFAULT_CLASS_MAP: dict[str, str] = {
    "FEMALE_GENITALIA_EXPOSED": "Exposed Female Genitalia",
    "MALE_GENITALIA_EXPOSED": "Exposed Male Genitalia",
    "FEMALE_BREAST_EXPOSED": "Exposed Female Nipple",
    "BUTTOCKS_EXPOSED": "Exposed Buttocks or Anus",
    "ANUS_EXPOSED": "Exposed Buttocks or Anus",
    "FEMALE_BREAST_COVERED": "Partially Exposed Female Breast",
    "FEMALE_GENITALIA_COVERED": "Female Swimwear or Underwear",
    "ANUS_COVERED": "Revealing Clothes",
    "MALE_BREAST_EXPOSED": "Bare Back",
}


def model_path() -> Path | None:
    """Where the installed nudenet package keeps its weights, or None when not installed."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / MODEL_FILE
    return path if path.is_file() else None


class NudeNetConfig(DetectionConfig):
    type: Literal["nudenet"] = "nudenet"
    input_size: int = Field(
        320, ge=64, le=1280, description="Square model input side (the weights are trained at 320)."
    )
    agnostic_nms: bool = Field(
        True, description="Suppress overlapping boxes across classes, as NudeNet itself does."
    )
    class_map: dict[str, str] | None = Field(
        None,
        description="NudeNet class -> taxonomy label; replaces the built-in table (exposed "
        "parts -> Explicit Nudity labels, covered breast/genitalia -> Suggestive labels).",
    )

    @field_validator("class_map")
    @classmethod
    def _known(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(CLASSES))
            if unknown:
                raise ValueError(f"unknown NudeNet classes: {unknown}")
            for label in value.values():
                if label not in taxonomy.CATEGORIES:
                    raise ValueError(f"unknown taxonomy label {label!r}")
        return value


class NudeNetAnalyzer(FrameAnalyzer[NudeNetConfig, yolo.Letterboxed]):
    """Exposed and covered body parts with boxes (NudeNet YOLOv8n, optional AGPL extra)."""

    kind: ClassVar[str] = "nudenet"
    input: ClassVar[str] = "RGB frame letterboxed (top-left) to 320×320, 0–1"
    config_model: ClassVar[type[AnalyzerConfig]] = NudeNetConfig
    emits: ClassVar[tuple[str, ...]] = ("labels", "tags")

    def __init__(self, config: NudeNetConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._class_map = dict(DEFAULT_CLASS_MAP if config.class_map is None else config.class_map)
        self._runner: yolo.YoloRunner | None = None
        self._version: str | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def version(self) -> str:
        if self._version is None:
            path = model_path()
            if path is None:
                return "unavailable"
            self._version = file_version(path)
        return self._version

    @property
    def provider(self) -> str | None:
        return None if self._runner is None else self._runner.provider

    def categories(self) -> list[str]:
        return list(dict.fromkeys(self._class_map.values()))

    def load(self) -> None:
        with self._lock:
            if self._runner is not None:
                return
            path = model_path()
            if path is None:
                raise AnalyzerUnavailable(
                    "the nudenet analyzer needs the optional NudeNet package: "
                    "pip install 'bastion[nudenet]'",
                    details={"analyzer": self.name, "package": "nudenet"},
                )
            from bastion.runtime.onnx import create_session

            self._runner = yolo.YoloRunner(
                create_session(path, self.context.runtime),
                input_size=self.config.input_size,
                class_names=CLASSES,
                layout="v8",
            )
            self._version = file_version(path)

    def _loaded(self) -> yolo.YoloRunner:
        if self._runner is None:
            self.load()
        assert self._runner is not None
        return self._runner

    def preprocess(self, frame: Frame) -> yolo.Letterboxed:
        size = self.config.input_size
        return yolo.prepare(frame.rgb, (size, size), mode="top_left", pad_value=0)

    def analyze(self, batch: Sequence[yolo.Letterboxed]) -> list[AnalyzerOutput]:
        return detect_batch(
            self._loaded(),
            batch,
            self.config,
            CLASSES,
            self._class_map,
            analyzer=self.name,
            model=self.model_name,
            version=self.version,
        )
