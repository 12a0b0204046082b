"""YOLO building blocks: letterbox resize, YOLOv5/v8 output decoding, NMS, box rescaling.

Two letterbox styles are offered. ``center`` is Ultralytics' own: resize to fit, then pad
both sides evenly. ``top_left`` pads the frame at the right and bottom to the model's
aspect ratio and then resizes the whole canvas, which is what NudeNet's reference code
does. Frames far larger than the model input are first shrunk with area averaging, which
bounds memory and avoids aliasing; smaller frames are resized exactly like the references.

Outputs come in two layouts: YOLOv8 and later, ``[N, 4 + C, A]`` (or transposed), boxes
``cx, cy, w, h`` followed by class scores; and YOLOv5, ``[N, A, 5 + C]`` (or transposed),
boxes followed by an objectness score and class scores multiplied by it. Boxes are mapped
back to frame pixels and clipped before non-maximum suppression (greedy, class-wise or
class-agnostic). :class:`YoloRunner` ties these to an ONNX session, and
:func:`detections_output` turns detections into tags and taxonomy labels with boxes.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from bastion.policy import taxonomy
from bastion.results import AnalyzerOutput, Box, Label, Tag

LetterboxMode = Literal["center", "top_left"]
Layout = Literal["auto", "v8", "v5"]
FloatArray = npt.NDArray[np.float32]

# A frame whose longer side exceeds this many times the model's longer side is shrunk first.
PRESHRINK_FACTOR = 4
DEFAULT_INPUT_SIZE = 640


@dataclass(frozen=True, slots=True)
class Geometry:
    """How a frame maps onto the model input: ``model = frame * scale + pad``."""

    width: int
    height: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float


@dataclass(frozen=True, slots=True)
class Letterboxed:
    """One frame ready for a detector: CHW float tensor and its geometry."""

    tensor: FloatArray
    geometry: Geometry


@dataclass(frozen=True, slots=True)
class Detection:
    """One detection in frame pixels (corners), with its class index and score 0–1."""

    class_id: int
    score: float
    x1: float
    y1: float
    x2: float
    y2: float


def _preshrink(rgb: np.ndarray, limit: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    longer = max(h, w)
    if longer <= limit:
        return rgb
    factor = limit / longer
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def letterbox(
    rgb: np.ndarray,
    size: tuple[int, int],
    *,
    mode: LetterboxMode = "center",
    pad_value: int = 114,
) -> tuple[np.ndarray, Geometry]:
    """Fit an RGB uint8 frame into ``size`` = (height, width); return the image and geometry."""
    target_h, target_w = size
    src = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    height, width = src.shape[:2]
    src = _preshrink(src, PRESHRINK_FACTOR * max(target_h, target_w))
    h, w = src.shape[:2]
    pre_x, pre_y = w / width, h / height
    if mode == "top_left":
        if w * target_h >= h * target_w:
            canvas_w, canvas_h = w, max(h, round(w * target_h / target_w))
        else:
            canvas_w, canvas_h = max(w, round(h * target_w / target_h)), h
        canvas = cv2.copyMakeBorder(
            src,
            0,
            canvas_h - h,
            0,
            canvas_w - w,
            cv2.BORDER_CONSTANT,
            value=(pad_value, pad_value, pad_value),
        )
        out = cv2.resize(canvas, (target_w, target_h), interpolation=cv2.INTER_LINEAR)
        geo = Geometry(
            width=width,
            height=height,
            scale_x=pre_x * target_w / canvas_w,
            scale_y=pre_y * target_h / canvas_h,
            pad_x=0.0,
            pad_y=0.0,
        )
        return out, geo
    ratio = min(target_h / h, target_w / w)
    new_w = min(target_w, max(1, round(w * ratio)))
    new_h = min(target_h, max(1, round(h * ratio)))
    resized: np.ndarray = src
    if (new_w, new_h) != (w, h):
        resized = cv2.resize(src, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (target_w - new_w) / 2, (target_h - new_h) / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    out = cv2.copyMakeBorder(
        resized,
        top,
        target_h - new_h - top,
        left,
        target_w - new_w - left,
        cv2.BORDER_CONSTANT,
        value=(pad_value, pad_value, pad_value),
    )
    geo = Geometry(
        width=width,
        height=height,
        scale_x=pre_x * new_w / w,
        scale_y=pre_y * new_h / h,
        pad_x=float(left),
        pad_y=float(top),
    )
    return out, geo


def to_tensor(image: np.ndarray, *, bgr: bool = False, scale: float = 1 / 255) -> FloatArray:
    """HxWx3 uint8 (RGB) to a contiguous 3xHxW float32 tensor, optionally as BGR."""
    arr = image[..., ::-1] if bgr else image
    chw = arr.transpose(2, 0, 1).astype(np.float32) * np.float32(scale)
    return np.ascontiguousarray(chw)


def prepare(
    rgb: np.ndarray,
    size: tuple[int, int],
    *,
    mode: LetterboxMode = "center",
    pad_value: int = 114,
    bgr: bool = False,
) -> Letterboxed:
    """Letterbox a frame and turn it into the model's input tensor."""
    image, geo = letterbox(rgb, size, mode=mode, pad_value=pad_value)
    return Letterboxed(tensor=to_tensor(image, bgr=bgr), geometry=geo)


def resolve_layout(
    shape: tuple[int, ...], num_classes: int, layout: Layout = "auto"
) -> tuple[Literal["v8", "v5"], bool]:
    """Which layout an output of ``shape`` (batch first) has: (kind, channels_first)."""
    if len(shape) != 3:
        raise ValueError(f"expected a [batch, a, b] detector output, got shape {shape}")
    d1, d2 = int(shape[1]), int(shape[2])
    candidates: list[tuple[Literal["v8", "v5"], int]]
    if layout == "auto":
        candidates = [("v8", 4), ("v5", 5)]
    else:
        candidates = [(layout, 4 if layout == "v8" else 5)]
    if num_classes > 0:
        for kind, extra in candidates:
            if d1 == extra + num_classes:
                return kind, True
            if d2 == extra + num_classes:
                return kind, False
        raise ValueError(
            f"output shape {shape} does not fit {num_classes} classes in layout {layout!r}"
        )
    # Unknown class count: the channel axis is the shorter one (anchors outnumber classes).
    kind = candidates[0][0]
    return kind, d1 <= d2


def num_classes_from(shape: tuple[int, ...], kind: Literal["v8", "v5"], first: bool) -> int:
    channels = int(shape[1] if first else shape[2])
    return channels - (4 if kind == "v8" else 5)


def decode(
    output: np.ndarray,
    *,
    kind: Literal["v8", "v5"],
    channels_first: bool,
    score_threshold: float,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """One image's raw output to (corner boxes in model pixels, scores, class ids)."""
    rows = np.asarray(output, dtype=np.float32)
    if channels_first:
        rows = rows.T
    cls = rows[:, 4:] if kind == "v8" else rows[:, 5:] * rows[:, 4:5]
    if cls.shape[1] == 0:
        empty = np.zeros((0,), dtype=np.float32)
        return np.zeros((0, 4), dtype=np.float32), empty, np.zeros((0,), dtype=np.intp)
    class_ids = np.argmax(cls, axis=1)
    scores = cls[np.arange(cls.shape[0]), class_ids]
    keep = scores >= score_threshold
    xywh, scores, class_ids = rows[keep, :4], scores[keep], class_ids[keep]
    boxes = np.empty_like(xywh)
    boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    return boxes, scores.astype(np.float32), class_ids.astype(np.intp)


def rescale(boxes: FloatArray, geo: Geometry) -> FloatArray:
    """Corner boxes from model pixels to frame pixels, clipped to the frame."""
    out = np.empty_like(boxes)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - geo.pad_x) / geo.scale_x
    out[:, [1, 3]] = (boxes[:, [1, 3]] - geo.pad_y) / geo.scale_y
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, geo.width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, geo.height)
    return out


def nms(
    boxes: FloatArray,
    scores: FloatArray,
    iou_threshold: float,
    class_ids: npt.NDArray[np.intp] | None = None,
    max_detections: int = 300,
) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression (OpenCV's), class-wise when ``class_ids`` is given.

    Returns kept indices, best score first; a box survives when its IoU with every
    kept box of its class is at most ``iou_threshold``.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.intp)
    corners = boxes.astype(np.float64)
    rects = np.column_stack((corners[:, :2], corners[:, 2:] - corners[:, :2])).tolist()
    confidences = scores.astype(np.float64).tolist()
    # every box is a candidate: the scores were thresholded when decoding
    if class_ids is None:
        kept = cv2.dnn.NMSBoxes(rects, confidences, 0.0, iou_threshold)
    else:
        kept = cv2.dnn.NMSBoxesBatched(
            rects, confidences, class_ids.astype(np.int32).tolist(), 0.0, iou_threshold
        )
    return np.asarray(kept, dtype=np.intp).reshape(-1)[:max_detections]


def postprocess(
    output: np.ndarray,
    geo: Geometry,
    *,
    kind: Literal["v8", "v5"],
    channels_first: bool,
    score_threshold: float,
    iou_threshold: float,
    agnostic: bool = False,
    max_detections: int = 300,
) -> list[Detection]:
    """One image's raw output to detections in frame pixels, best first."""
    boxes, scores, class_ids = decode(
        output, kind=kind, channels_first=channels_first, score_threshold=score_threshold
    )
    boxes = rescale(boxes, geo)
    keep = nms(
        boxes,
        scores,
        iou_threshold,
        None if agnostic else class_ids,
        max_detections=max_detections,
    )
    return [
        Detection(
            class_id=int(class_ids[i]),
            score=float(scores[i]),
            x1=float(boxes[i, 0]),
            y1=float(boxes[i, 1]),
            x2=float(boxes[i, 2]),
            y2=float(boxes[i, 3]),
        )
        for i in keep
    ]


def metadata_names(metadata: dict[str, str]) -> list[str]:
    """Class names from an Ultralytics export's ``names`` metadata, or [] when absent."""
    raw = metadata.get("names")
    if not raw:
        return []
    try:
        parsed: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return []
    if isinstance(parsed, dict):
        return [str(parsed[k]) for k in sorted(parsed, key=int)]
    if isinstance(parsed, list | tuple):
        return [str(n) for n in parsed]
    return []


def metadata_size(metadata: dict[str, str]) -> tuple[int, int] | None:
    """Input size (height, width) from an Ultralytics export's ``imgsz`` metadata."""
    raw = metadata.get("imgsz")
    if not raw:
        return None
    try:
        parsed: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, int):
        return parsed, parsed
    if isinstance(parsed, list | tuple) and len(parsed) == 2:
        return int(parsed[0]), int(parsed[1])
    return None


def to_box(det: Detection) -> Box:
    return Box(
        x=round(det.x1, 1),
        y=round(det.y1, 1),
        width=round(det.x2 - det.x1, 1),
        height=round(det.y2 - det.y1, 1),
    )


def detections_output(
    detections: Sequence[Detection],
    names: Sequence[str],
    class_map: Mapping[str, str],
    *,
    analyzer: str,
    model: str,
    version: str,
) -> AnalyzerOutput:
    """Tags (every detection) and taxonomy labels (mapped classes), each with its box."""
    tags: list[Tag] = []
    labels: list[Label] = []
    for det in detections:
        name = names[det.class_id] if det.class_id < len(names) else f"class_{det.class_id}"
        box = to_box(det)
        confidence = round(min(100.0, max(0.0, 100.0 * det.score)), 2)
        tags.append(
            Tag(name=name, confidence=confidence, analyzer=analyzer, version=version, box=box)
        )
        label = class_map.get(name)
        if label:
            labels.append(
                taxonomy.label(
                    label,
                    confidence,
                    analyzer=analyzer,
                    model=model,
                    version=version,
                    box=box,
                    source=name,
                )
            )
    labels.sort(key=lambda lab: -lab.confidence)
    return AnalyzerOutput(labels=labels, tags=tags, extra={"detections": len(detections)})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Which raw boxes become detections."""

    score: float = 0.25
    iou: float = 0.45
    agnostic: bool = False
    max_detections: int = 100


class YoloRunner:
    """An ONNX YOLO session with its input size, class names and output layout."""

    def __init__(
        self,
        session: Any,
        *,
        input_size: int | tuple[int, int] | None,
        class_names: Sequence[str],
        layout: Layout,
    ) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name: str = inp.name
        meta: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self.size = _input_size(input_size, inp.shape, meta)
        self.names: list[str] = list(class_names) or metadata_names(meta)
        self._layout = layout
        self._resolved: tuple[Literal["v8", "v5"], bool] | None = None

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def _run(self, tensors: Sequence[FloatArray]) -> tuple[np.ndarray, Literal["v8", "v5"], bool]:
        x = np.stack(tensors).astype(np.float32, copy=False)
        out = np.asarray(self.session.run(None, {self.input_name: x})[0])
        if out.ndim == 2:  # a single-image export without the batch axis
            out = out[None]
        if self._resolved is None:
            kind, first = resolve_layout(out.shape, len(self.names), self._layout)
            if not self.names:
                count = num_classes_from(out.shape, kind, first)
                self.names = [f"class_{i}" for i in range(count)]
            self._resolved = (kind, first)
        kind, first = self._resolved
        return out, kind, first

    def detect(
        self, batch: Sequence[Letterboxed], thresholds: Thresholds, batch_size: int
    ) -> list[list[Detection]]:
        """Detections for each prepared frame, in order, ``batch_size`` frames per call."""
        results: list[list[Detection]] = []
        for start in range(0, len(batch), batch_size):
            chunk = batch[start : start + batch_size]
            raw, kind, first = self._run([item.tensor for item in chunk])
            for item, out in zip(chunk, raw, strict=True):
                results.append(
                    postprocess(
                        out,
                        item.geometry,
                        kind=kind,
                        channels_first=first,
                        score_threshold=thresholds.score,
                        iou_threshold=thresholds.iou,
                        agnostic=thresholds.agnostic,
                        max_detections=thresholds.max_detections,
                    )
                )
        return results


def _input_size(
    configured: int | tuple[int, int] | None, shape: Sequence[Any], meta: dict[str, str]
) -> tuple[int, int]:
    if isinstance(configured, int):
        return configured, configured
    if configured is not None:
        return int(configured[0]), int(configured[1])
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return int(shape[2]), int(shape[3])
    return metadata_size(meta) or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
