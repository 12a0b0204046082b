"""Where text is: the PP-OCR detection model, and the cheap "is there any text?" gate.

:class:`TextDetector` runs the DB text-detection model at a chosen scale and returns
text-line quadrilaterals in the input's pixel coordinates. :class:`TextPresenceGate`
runs the same model on a small copy of the image (longer side 480: about a fifth of
the pixels full detection uses on a 640x427 photo) with a permissive threshold: any
text-like response passes. Photos without anything text-like stop there; the rest go on
to full detection and recognition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

_MEAN = np.float32(0.5)
_STD = np.float32(0.5)
_STRIDE = 32  # the network's input sides must be multiples of this
_MAX_GATE_UPSCALE = 4.0


@dataclass(frozen=True, slots=True)
class Detection:
    """Text regions of one image: (N, 4, 2) float32 corner points and a score each."""

    boxes: np.ndarray
    scores: tuple[float, ...]
    ms: float

    def __len__(self) -> int:
        return len(self.scores)


def to_tensor(bgr: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize by ``scale``, normalise and pad to multiples of 32 (padding is neutral grey).

    Returns the NCHW float32 tensor and the (height, width) of the resized image inside it.
    Padding rather than stretching keeps text shapes intact for very thin or tiny images.
    """
    h, w = bgr.shape[:2]
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = (
        bgr if (rh, rw) == (h, w) else cv2.resize(bgr, (rw, rh), interpolation=cv2.INTER_LINEAR)
    )
    ph = max(_STRIDE, -(-rh // _STRIDE) * _STRIDE)
    pw = max(_STRIDE, -(-rw // _STRIDE) * _STRIDE)
    tensor = np.zeros((1, 3, ph, pw), dtype=np.float32)  # zero == grey after normalising
    norm = (resized.astype(np.float32) * np.float32(1 / 255.0) - _MEAN) / _STD
    tensor[0, :, :rh, :rw] = norm.transpose(2, 0, 1)
    return tensor, (rh, rw)


class TextDetector:
    """The PP-OCR DB detector over an onnxruntime session (thread-safe: sessions are)."""

    def __init__(
        self,
        session: Any,
        *,
        binary_threshold: float = 0.3,
        box_threshold: float = 0.5,
        unclip_ratio: float = 1.6,
        max_candidates: int = 1000,
        max_kernel_fraction: float = 0.65,
    ) -> None:
        self.session = session
        self.input_name: str = session.get_inputs()[0].name
        self.binary_threshold = binary_threshold
        self.box_threshold = box_threshold
        self.unclip_ratio = unclip_ratio
        self.max_candidates = max_candidates
        self.max_kernel_fraction = max_kernel_fraction

    def probability(
        self, bgr: np.ndarray, scale: float, max_kernel_fraction: float | None = None
    ) -> tuple[np.ndarray, float]:
        """The text probability map of ``bgr`` at ``scale`` (unpadded), and the model time.

        Blob-shaped responses are removed (see :func:`suppress_blobs`).
        """
        tensor, (rh, rw) = to_tensor(bgr, scale)
        t0 = time.perf_counter()
        pred = self.session.run(None, {self.input_name: tensor})[0]
        ms = (time.perf_counter() - t0) * 1000
        prob = np.ascontiguousarray(pred[0, 0, :rh, :rw])
        fraction = self.max_kernel_fraction if max_kernel_fraction is None else max_kernel_fraction
        return suppress_blobs(prob, self.binary_threshold, fraction), ms

    def detect(
        self, bgr: np.ndarray, scale: float, box_threshold: float | None = None
    ) -> Detection:
        """Text-line boxes in ``bgr`` pixel coordinates, sorted top-to-bottom, left-to-right."""
        h, w = bgr.shape[:2]
        prob, ms = self.probability(bgr, scale)
        return self.boxes(prob, (h, w), box_threshold, ms)

    def boxes(
        self,
        prob: np.ndarray,
        size: tuple[int, int],
        box_threshold: float | None = None,
        ms: float = 0.0,
    ) -> Detection:
        """Boxes from a probability map, mapped to an image of ``size`` (height, width)."""
        from rapidocr.ch_ppocr_det.utils import DBPostProcess

        empty = Detection(np.zeros((0, 4, 2), np.float32), (), ms)
        box_thresh = self.box_threshold if box_threshold is None else box_threshold
        # a box's score is a mean of the map: none can reach box_thresh above the map's peak
        peak = float(prob.max()) if prob.size else 0.0
        if peak <= self.binary_threshold or peak < box_thresh:
            return empty
        post = DBPostProcess(  # cheap to build; one per call keeps concurrent calls apart
            thresh=self.binary_threshold,
            box_thresh=box_thresh,
            max_candidates=self.max_candidates,
            unclip_ratio=self.unclip_ratio,
            use_dilation=True,
            score_mode="fast",
        )
        boxes, scores = post(prob[None, None], size)
        if len(boxes) == 0:
            return empty
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4, 2)
        order = _reading_order(arr)
        return Detection(arr[order], tuple(float(scores[i]) for i in order), ms)


def suppress_blobs(prob: np.ndarray, threshold: float, fraction: float) -> np.ndarray:
    """Zero out responses too thick to be a line of text.

    The detector answers smooth or blurred areas (skin, sky, out-of-focus backgrounds)
    with one large confident blob. Text kernels are shrunk text lines and stay thinner:
    measured on photos, a word filling 70% of the picture height gave a kernel 0.39 of
    the shorter side at the gate's scale (0.61 at full scale), while blobs were 0.51 or
    more (0.71 or more). A region whose thinnest extent exceeds ``fraction`` of the
    shorter side, and two thirds of that of the longer side (so wide banners keep their
    text), is dropped.
    """
    if prob.size == 0 or fraction >= 1.0:
        return prob
    h, w = prob.shape
    limit = max(fraction * min(h, w), fraction * 2 / 3 * max(h, w))
    mask = (prob > threshold).astype(np.uint8)
    # A region spans as many consecutive rows (columns) as its box is high (wide), each
    # holding some of its pixels: without runs of occupied rows and columns longer than
    # the limit, no region can be too thick and labelling them is not needed.
    if _longest_run(mask, axis=1) <= limit or _longest_run(mask, axis=0) <= limit:
        return prob
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = prob
    for i in range(1, count):
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        if min(bw, bh) <= limit:
            continue
        inside = labels[y : y + bh, x : x + bw] == i
        ys, xs = np.nonzero(inside)
        points = np.column_stack([xs + x, ys + y]).astype(np.float32)
        (_, _), (rw, rh), _ = cv2.minAreaRect(points)
        if min(rw, rh) > limit:
            if out is prob:
                out = prob.copy()
            out[y : y + bh, x : x + bw][inside] = 0.0
    return out


def _longest_run(mask: np.ndarray, axis: int) -> int:
    """The most consecutive rows (``axis=1``) or columns (``axis=0``) holding a set pixel."""
    occupied = np.asarray(mask.any(axis=axis), dtype=np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], occupied, [0]))))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def _reading_order(boxes: np.ndarray) -> list[int]:
    """Indices sorting boxes into lines (by top edge, 10 px tolerance) then left to right."""
    if len(boxes) == 0:
        return []
    tops = boxes[:, :, 1].min(axis=1)
    lefts = boxes[:, :, 0].min(axis=1)
    by_top = np.argsort(tops, kind="stable")
    line_id = np.concatenate([[0], np.cumsum(np.diff(tops[by_top]) >= 10)])
    order = np.lexsort((lefts[by_top], line_id))
    return [int(i) for i in by_top[order]]


@dataclass(frozen=True, slots=True)
class TextPresence:
    present: bool
    score: float
    ms: float
    line_px: float | None = None
    """Height of the smallest text-like line that made it pass, in the input's pixels."""


class TextPresenceGate:
    """Is there anything text-like? The detector on a small copy, any response counts.

    ``side`` is the longer side the image is scaled to (down, or up at most 4x);
    ``threshold`` is the lowest mean text probability a region needs, ``min_peak`` the
    lowest probability of its strongest pixel (faint shading on smooth gradients peaks
    near 0.4, every readable line measured peaked above 0.5). Measured on
    photos with a line drawn in each of seven languages: every banner or outlined line
    (112 of 112) passed; of 282 plain one-colour lines at 10-20 px that full OCR could
    read, 276 passed (the 6 missed were 10-20 px lines on busy backgrounds, which the
    detector only sees when upscaled). Raise ``side`` or switch the gate off where
    small plain text matters more than speed.
    """

    def __init__(
        self,
        detector: TextDetector,
        side: int = 480,
        threshold: float = 0.3,
        max_kernel_fraction: float = 0.45,
        min_peak: float = 0.5,
    ) -> None:
        self.detector = detector
        self.side = side
        self.threshold = threshold
        self.max_kernel_fraction = max_kernel_fraction
        self.min_peak = min_peak

    def scale(self, height: int, width: int) -> float:
        return min(_MAX_GATE_UPSCALE, self.side / max(height, width, 1))

    def __call__(self, bgr: np.ndarray) -> TextPresence:
        h, w = bgr.shape[:2]
        t0 = time.perf_counter()
        prob, _ = self.detector.probability(bgr, self.scale(h, w), self.max_kernel_fraction)
        if prob.size == 0 or float(prob.max()) < self.min_peak:  # no region can peak high enough
            return TextPresence(False, 0.0, (time.perf_counter() - t0) * 1000)
        det = self.detector.boxes(prob, prob.shape[:2], box_threshold=self.threshold)
        score = 0.0
        line: float | None = None
        for quad, box_score in zip(det.boxes, det.scores, strict=True):
            (x0, y0), (x1, y1) = np.floor(quad.min(axis=0)), np.ceil(quad.max(axis=0))
            peak = float(prob[max(0, int(y0)) : int(y1) + 1, max(0, int(x0)) : int(x1) + 1].max())
            if peak >= self.min_peak:
                score = max(score, box_score)
                height = _line_height(quad) / self.scale(h, w)
                line = height if line is None else min(line, height)
        return TextPresence(score > 0.0, score, (time.perf_counter() - t0) * 1000, line)


def _line_height(quad: np.ndarray) -> float:
    """The thickness of a text-line quadrilateral (its shorter side), in its pixels."""
    sides = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    return float(min(sides))
