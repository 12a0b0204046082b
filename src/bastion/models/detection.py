"""What every YOLO-style analyzer shares: detection thresholds and the batch → output step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig
from bastion.models import yolo
from bastion.results import AnalyzerOutput


class DetectionConfig(AnalyzerConfig):
    """Thresholds that turn raw boxes into detections."""

    score_threshold: float = Field(
        0.25, ge=0, le=1, description="Smallest class score (0–1) kept as a detection."
    )
    iou_threshold: float = Field(
        0.45,
        ge=0,
        le=1,
        description="Overlap (IoU) above which non-maximum suppression drops the weaker box.",
    )
    agnostic_nms: bool = Field(
        False, description="Suppress overlapping boxes across classes, not only within one."
    )
    max_detections: int = Field(100, ge=1, le=1000, description="Most detections per frame.")

    def thresholds(self) -> yolo.Thresholds:
        return yolo.Thresholds(
            score=self.score_threshold,
            iou=self.iou_threshold,
            agnostic=self.agnostic_nms,
            max_detections=self.max_detections,
        )


def detect_batch(
    runner: yolo.YoloRunner,
    batch: Sequence[yolo.Letterboxed],
    config: DetectionConfig,
    names: Sequence[str],
    class_map: Mapping[str, str],
    *,
    analyzer: str,
    model: str,
    version: str,
) -> list[AnalyzerOutput]:
    """Run the detector on a batch and turn each frame's detections into tags and labels."""
    if not batch:
        return []
    return [
        yolo.detections_output(
            dets, names, class_map, analyzer=analyzer, model=model, version=version
        )
        for dets in runner.detect(batch, config.thresholds(), config.max_batch_size)
    ]
